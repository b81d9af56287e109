/**
 * A WebSocket that sends everything written in one turn of the event loop as one frame.
 *
 * The Neon driver writes a statement as several Postgres messages (Parse, Bind, Describe,
 * Execute, Sync), one `send` each. Its own coalescing defers with `setTimeout(0)`, which Node
 * clamps to a millisecond or more per statement; without it, each message is a frame and a
 * system call at both ends. Flushing in a microtask gives one frame per statement and adds no
 * delay: the messages of a statement are written synchronously, one after another.
 */
type SocketClass = new (...args: any[]) => { send(data: unknown): void };

export function coalescing<T extends SocketClass>(Base: T): T {
  return class CoalescingWebSocket extends Base {
    #pending: Uint8Array[] = [];

    override send(data: unknown): void {
      if (!(data instanceof Uint8Array)) return super.send(data);
      if (this.#pending.length === 0) queueMicrotask(() => this.#flush());
      this.#pending.push(data);
    }

    #flush(): void {
      const chunks = this.#pending.splice(0);
      if (chunks.length === 1) return super.send(chunks[0]);
      let size = 0;
      for (const chunk of chunks) size += chunk.byteLength;
      const frame = new Uint8Array(size);
      let offset = 0;
      for (const chunk of chunks) {
        frame.set(chunk, offset);
        offset += chunk.byteLength;
      }
      super.send(frame);
    }
  };
}
