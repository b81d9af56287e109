export { createApi, type ApiOptions } from "./api.ts";
