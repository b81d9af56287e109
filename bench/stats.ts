/** Percentiles of samples (nearest rank). */
export function percentile(samples: number[], p: number): number {
  if (samples.length === 0) return Number.NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

export const median = (samples: number[]) => percentile(samples, 50);

export const round = (value: number, digits = 2) => Math.round(value * 10 ** digits) / 10 ** digits;

/** The middle one of repeated measurements by `figure` (the upper of the two middle ones), with every one's figure. */
export function middleOf<T>(list: T[], figure: (item: T) => number): T & { samples: number[] } {
  const sorted = [...list].sort((a, b) => figure(a) - figure(b));
  return { ...sorted[Math.floor(sorted.length / 2)]!, samples: list.map(figure) };
}

/** The median of `over[i] / under[i]`: repeated measurements taken in pairs, each pair in the same moments of the machine. */
export const pairedRatio = (over: number[], under: number[]) => round(median(over.map((value, i) => value / under[i]!)), 3);
