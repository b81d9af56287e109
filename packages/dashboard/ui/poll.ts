/** Runs `tick` now and then every `everyMs` while the page is shown; returns the stop. */
export function poll(tick: () => Promise<void>, everyMs = 1_000): () => void {
  let stopped = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const loop = async () => {
    try {
      await tick();
    } catch {
      // Shown by the page itself; the next tick tries again.
    }
    if (!stopped) timer = setTimeout(() => void loop(), everyMs);
  };
  void loop();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
