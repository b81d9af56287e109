export * from "./wire.ts";
export * from "./signing.ts";
export * from "./body.ts";
export * from "./seen-signatures.ts";
export * from "./duration.ts";
export * from "./ids.ts";
export * from "./text.ts";
export * from "./events.ts";
