export * from "./wire.ts";
export * from "./signing.ts";
export * from "./duration.ts";
export * from "./ids.ts";
