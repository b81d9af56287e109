export { RedisQueue, type RedisQueueOptions } from "./queue.ts";
