/**
 * Reading a request's or an answer's body without trusting its size: both ends of the wire
 * read what the other sent through this, so neither buffers more than its limit.
 */

/** Anything with a body stream and headers: a `Request` or a `Response`. */
export interface BodyCarrier {
  readonly body: ReadableStream<Uint8Array> | null;
  readonly headers: Headers;
}

/**
 * The body as text, or null once it is larger than `limit` bytes: refused at once when its
 * `content-length` says so, else as soon as the bytes read pass the limit (the rest is not read).
 */
export async function readTextCapped(message: BodyCarrier, limit: number): Promise<string | null> {
  const bytes = await readBytesCapped(message, limit);
  return bytes && new TextDecoder().decode(bytes);
}

/** The body's bytes, or null once it is larger than `limit` bytes (see {@link readTextCapped}). */
export async function readBytesCapped(message: BodyCarrier, limit: number): Promise<Uint8Array | null> {
  const declared = Number(message.headers.get("content-length") ?? Number.NaN);
  if (declared > limit) {
    await message.body?.cancel().catch(() => {});
    return null;
  }
  if (!message.body) return new Uint8Array(0);
  const reader = message.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel().catch(() => {});
      return null;
    }
    chunks.push(value);
  }
  return joinChunks(chunks, size);
}

/** Chunks read off a stream as one array of `size` bytes (the one chunk itself when there is one). */
export function joinChunks(chunks: readonly Uint8Array[], size: number): Uint8Array {
  if (chunks.length === 1) return chunks[0]!;
  const all = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    all.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return all;
}
