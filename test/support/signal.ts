/** A one-shot signal between two parts of a test: one awaits `happened`, the other calls `set()`. */
export interface Signal {
  readonly happened: Promise<void>;
  set(): void;
}

export function signal(): Signal {
  let set!: () => void;
  const happened = new Promise<void>((resolve) => (set = resolve));
  return { happened, set };
}

/**
 * Runs `meanwhile` while the transaction `transaction` opens is held open at `hold()` (as a slow
 * one would be), then lets it go on and waits for it.
 */
export async function whileHeld<T>(transaction: (hold: () => Promise<void>) => Promise<unknown>, meanwhile: () => Promise<T>): Promise<T> {
  const held = signal();
  const done = signal();
  const open = transaction(async () => {
    held.set();
    await done.happened;
  });
  await held.happened;
  try {
    return await meanwhile();
  } finally {
    done.set();
    await open;
  }
}
