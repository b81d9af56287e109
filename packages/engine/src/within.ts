/**
 * A bounded wait, for stops, drains and closes that must not hang on a service that does not
 * answer: what is still on its way after the deadline is left to finish or fail on its own.
 */

/** Waits for `promise` (a rejection counts as done), but not past `deadline` (epoch ms). */
export async function within(promise: Promise<unknown>, deadline: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([promise.catch(() => {}), new Promise<void>((resolve) => (timer = setTimeout(resolve, Math.max(0, deadline - Date.now()))))]);
  clearTimeout(timer);
}
