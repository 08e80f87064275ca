/**
 * A small, fast, seeded pseudo-random generator (sfc32, seeded through splitmix32) so that
 * every randomized test replays exactly from its seed. Not for cryptography.
 *
 * @example
 * ```ts
 * import { Rng } from 'corewal/testing';
 * const rng = new Rng(42);
 * rng.int(10);        // same value on every run with seed 42
 * rng.bytes(16);      // Buffer of 16 pseudo-random bytes
 * ```
 */
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  /** The seed this generator started from. */
  readonly seed: number;

  constructor(seed: number | string = 0) {
    this.seed = typeof seed === 'string' ? hashString(seed) : seed;
    // splitmix32 spreads even small or similar seeds over the whole state.
    let s = (this.seed ^ Math.floor(this.seed / 4294967296)) >>> 0;
    const next = (): number => {
      s = (s + 0x9e3779b9) | 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = next(); this.b = next(); this.c = next(); this.d = next();
    for (let i = 0; i < 12; i++) this.u32();
  }

  /** A uniform 32-bit unsigned integer. */
  u32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** A uniform float in [0, 1). */
  float(): number {
    return this.u32() / 4294967296;
  }

  /** A uniform integer in [0, n) for 0 < n <= 2^32; 0 when n <= 1. */
  int(n: number): number {
    if (n <= 1) return 0;
    return Math.floor(this.float() * n);
  }

  /** A uniform integer in [lo, hi] (both inclusive). */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  /** True with probability `p`. */
  bool(p = 0.5): boolean {
    return this.float() < p;
  }

  /** One element of a non-empty array. */
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }

  /** `n` pseudo-random bytes. */
  bytes(n: number): Buffer {
    const out = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i += 4) {
      const v = this.u32();
      out[i] = v & 0xff;
      if (i + 1 < n) out[i + 1] = (v >>> 8) & 0xff;
      if (i + 2 < n) out[i + 2] = (v >>> 16) & 0xff;
      if (i + 3 < n) out[i + 3] = v >>> 24;
    }
    return out;
  }

  /** An independent generator derived from this one (for a sub-component that must not shift this stream). */
  fork(): Rng {
    return new Rng(this.u32() * 2097152 + (this.u32() >>> 11));
  }
}

function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}
