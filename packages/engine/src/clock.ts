/**
 * The executor's clock. It stamps records and log lines only: whether a job is due, a lease has
 * run out or an event arrived after a wait opened is judged on the store's clock, so executors
 * whose clocks disagree (or disagree with the database) still agree on those. Injectable, so
 * tests and the simulation can skew it.
 */
export interface Clock {
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };
