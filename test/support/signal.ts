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
