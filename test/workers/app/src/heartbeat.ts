/** Every 5 s: each tick is woken in workerd by the Scheduler's alarm (wrangler dev fires no cron). Its own module: a Worker's entry may export handlers only. */
export const HEARTBEAT_CRON = "*/5 * * * * *";
