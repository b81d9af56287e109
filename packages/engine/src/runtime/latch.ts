/**
 * A wake-up that is never lost: `set()` before anyone waits makes the next `wait()` return at
 * once (and clears it), so an event between checking for work and going to sleep still wakes
 * the sleeper. Each `set()` releases at most one `wait()`, so nothing can spin on it.
 */
export class Latch {
  private flag = false;
  private release: (() => void) | undefined;

  get isSet(): boolean {
    return this.flag;
  }

  set(): void {
    if (this.release) this.release();
    else this.flag = true;
  }

  /** Resolves at the next `set()` (or at once if one came since the last wait), or after `ms`. */
  wait(ms: number): Promise<void> {
    if (this.flag) {
      this.flag = false;
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        if (this.release === done) this.release = undefined;
        resolve();
      };
      const timer = setTimeout(done, Math.max(0, ms));
      this.release = done;
    });
  }
}
