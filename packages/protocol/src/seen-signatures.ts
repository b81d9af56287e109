/**
 * Replay protection inside one process (an app's `serve()`, the executor's registration
 * route): a signed request is taken once. A signature is
 * valid for {@link SIGNATURE_TOLERANCE_SECONDS} either side of its timestamp, so remembering
 * each accepted one for twice that long covers every moment it could verify again.
 *
 * It holds per process: on serverless platforms a replay may reach another instance, where the
 * short window and TLS are the protection (see SECURITY.md). The executor never sends the same
 * signature twice (every attempt is signed anew), so a repeat is never one of its own.
 */
import { SIGNATURE_TOLERANCE_SECONDS } from "./signing.ts";

const REMEMBER_MS = 2 * SIGNATURE_TOLERANCE_SECONDS * 1000;
/** Bounds the memory whatever the rate: about 100 bytes each. */
const MAX_REMEMBERED = 50_000;

export class SeenSignatures {
  /** Signature → when it may be forgotten; in insertion order, so the oldest come first. */
  private readonly seen = new Map<string, number>();

  /**
   * Records a verified signature header; false when it was already recorded (a replay). Keyed
   * on the digest alone: the same digest is the same request, however its timestamp is written
   * (`t=0…` verifies like `t=…`).
   */
  firstTime(header: string, nowMs = Date.now()): boolean {
    const signature = header.slice(header.lastIndexOf("s=") + 2).trim();
    this.forgetExpired(nowMs);
    if (this.seen.has(signature)) return false;
    if (this.seen.size >= MAX_REMEMBERED) this.seen.delete(this.seen.keys().next().value!);
    this.seen.set(signature, nowMs + REMEMBER_MS);
    return true;
  }

  private forgetExpired(nowMs: number): void {
    for (const [signature, expiresAt] of this.seen) {
      if (expiresAt > nowMs) return;
      this.seen.delete(signature);
    }
  }
}
