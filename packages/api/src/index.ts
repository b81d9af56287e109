export { createApi, DEFAULT_MAX_BODY_BYTES, type ApiOptions } from "./api.ts";
export { createCheckpointHandler, tooLargeMessage, type CheckpointHandler, type PlainAnswer } from "./checkpoint-route.ts";
export type { SigningKeys } from "./signed.ts";
export { decodeUtf8 } from "./input.ts";
