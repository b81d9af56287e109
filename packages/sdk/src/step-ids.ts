/**
 * Step IDs: a step's ID is its name; a name used again in the same run gets `:1`, `:2`...
 * skipping any ID already taken (a user may well name a step `"fetch:1"` themselves).
 * Replay calls steps in the same order, so the same calls get the same IDs.
 */
export class StepIdAllocator {
  private readonly taken = new Set<string>();
  private readonly nextSuffix = new Map<string, number>();

  /** The ID of the next step called `name` in this run. */
  allocate(name: string): string {
    if (!this.taken.has(name)) {
      this.taken.add(name);
      return name;
    }
    let suffix = this.nextSuffix.get(name) ?? 1;
    while (this.taken.has(`${name}:${suffix}`)) suffix++;
    const id = `${name}:${suffix}`;
    this.taken.add(id);
    this.nextSuffix.set(name, suffix + 1);
    return id;
  }
}
