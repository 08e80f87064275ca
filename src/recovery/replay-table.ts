import { assert } from '../util/assert.js';
import type { SegmentCursor } from './cursor.js';

/** A value slot: a Put's packed record reference (>= 0), a deletion, or a copied value (index into `copies`). */
export const DELETED = -1;

/**
 * The changes a WAL replay makes, keyed by the key's bytes, with nothing allocated per
 * operation: keys are copied once into an arena (the first time each is seen), found
 * again through an open-addressing hash table of typed arrays, and values are kept as
 * references to their records (see `SegmentCursor.headValueRef`). Replaying a WAL that
 * overwrites keys thus costs a hash and a compare per entry, not a string and a buffer.
 * {@link ReplayTable.forEach} hands out the final change per key, for the caller to fold
 * into the checkpoint's state.
 */
export class ReplayTable {
  private arena = new Uint8Array(1 << 16);
  private arenaLen = 0;
  private cap = 1 << 12;
  private mask = this.cap - 1;
  private used = 0;
  /** Per slot: key offset in the arena (-1: empty), key length, key hash, value. */
  private kOff = new Int32Array(this.cap).fill(-1);
  private kLen = new Int32Array(this.cap);
  private kHash = new Int32Array(this.cap);
  private val = new Float64Array(this.cap);
  private readonly copies: Uint8Array[] = [];

  /** Distinct keys changed. */
  get size(): number { return this.used; }

  /** A value reference for a value that has no record reference (slow path): a copy held here. */
  copyRef(value: Uint8Array): number {
    this.copies.push(value);
    return -2 - (this.copies.length - 1);
  }

  /** Records that key `buf[start, end)` now has `value` (a record reference, `copyRef`, or DELETED). */
  set(buf: Uint8Array, start: number, end: number, value: number): void {
    const h = hashBytes(buf, start, end);
    const len = end - start;
    const arena = this.arena;
    for (let s = h & this.mask; ; s = (s + 1) & this.mask) {
      const off = this.kOff[s]!;
      if (off < 0) {
        this.insert(s, buf, start, len, h, value);
        return;
      }
      if (this.kHash[s] === h && this.kLen[s] === len) {
        let i = 0;
        while (i < len && arena[off + i] === buf[start + i]) i++;
        if (i === len) {
          this.val[s] = value;
          return;
        }
      }
    }
  }

  private insert(slot: number, buf: Uint8Array, start: number, len: number, h: number, value: number): void {
    if (this.arenaLen + len > this.arena.length) {
      const bigger = new Uint8Array(Math.max(this.arena.length * 2, this.arenaLen + len));
      bigger.set(this.arena.subarray(0, this.arenaLen));
      this.arena = bigger;
    }
    assert(this.arenaLen + len <= 0x7fffffff, 'replay key arena below 2 GiB');
    this.arena.set(buf.subarray(start, start + len), this.arenaLen);
    this.kOff[slot] = this.arenaLen;
    this.kLen[slot] = len;
    this.kHash[slot] = h;
    this.val[slot] = value;
    this.arenaLen += len;
    if (++this.used * 2 > this.cap) this.grow();
  }

  private grow(): void {
    const { kOff, kLen, kHash, val } = this;
    this.cap *= 2;
    this.mask = this.cap - 1;
    this.kOff = new Int32Array(this.cap).fill(-1);
    this.kLen = new Int32Array(this.cap);
    this.kHash = new Int32Array(this.cap);
    this.val = new Float64Array(this.cap);
    for (let i = 0; i < kOff.length; i++) {
      if (kOff[i]! < 0) continue;
      let s = kHash[i]! & this.mask;
      while (this.kOff[s]! >= 0) s = (s + 1) & this.mask;
      this.kOff[s] = kOff[i]!; this.kLen[s] = kLen[i]!; this.kHash[s] = kHash[i]!; this.val[s] = val[i]!;
    }
  }

  /**
   * Every changed key once, with its final value: `ref` >= 0 a record reference, DELETED,
   * or `copy` set for a value held here. `key` is the arena and the key's range in it.
   */
  forEach(fn: (arena: Uint8Array, start: number, end: number, ref: number, copy: Uint8Array | null) => void): void {
    for (let s = 0; s < this.cap; s++) {
      const off = this.kOff[s]!;
      if (off < 0) continue;
      const v = this.val[s]!;
      fn(this.arena, off, off + this.kLen[s]!, v, v <= -2 ? this.copies[-2 - v]! : null);
    }
  }
}

/** A 32-bit hash of `buf[start, end)`, four bytes per multiply (murmur3's mixing). */
export function hashBytes(buf: Uint8Array, start: number, end: number): number {
  let h = (end - start) | 0;
  let i = start;
  for (const end4 = end - 3; i < end4; i += 4) {
    let k = buf[i]! | (buf[i + 1]! << 8) | (buf[i + 2]! << 16) | (buf[i + 3]! << 24);
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    h ^= Math.imul(k, 0x1b873593);
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  let k = 0;
  for (let sh = 0; i < end; i++, sh += 8) k |= buf[i]! << sh;
  h ^= Math.imul(((Math.imul(k, 0xcc9e2d51) << 15) | (Math.imul(k, 0xcc9e2d51) >>> 17)), 0x1b873593);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}

/**
 * Hands every final change of `table` to `set` / `del` by map key: deletions, copied
 * values, and each live Put read back from its record (key and value), the references
 * sorted so that every segment is read forward.
 */
export function foldReplay(
  table: ReplayTable, cursors: readonly SegmentCursor[], set: (key: string, value: Uint8Array) => void, del: (key: string) => void,
): void {
  const refs = foldCopied(table, set, del);
  for (let i = 0; i < refs.length; i++) readBackRef(cursors, refs[i]!, set);
}

/**
 * The first half of {@link foldReplay}: deletions and copied values go to `del` / `set`
 * now; returns the references of the values still in their segments, sorted so that
 * reading them back in order ({@link readBackRef}) reads every segment forward.
 */
export function foldCopied(
  table: ReplayTable, set: (key: string, value: Uint8Array) => void, del: (key: string) => void, sorted = true,
): Float64Array {
  const refs = new Float64Array(table.size);
  let n = 0;
  table.forEach((arena, start, end, ref, copy) => {
    if (ref >= 0) { refs[n++] = ref; return; }
    const k = Buffer.from(arena.buffer, arena.byteOffset, arena.byteLength).toString('latin1', start, end);
    if (ref === DELETED) del(k); else set(k, copy!);
  });
  // start * 65536 + core: ascending means ascending positions within each core.
  return sorted ? refs.subarray(0, n).sort() : refs.subarray(0, n);
}

/** The second half of {@link foldReplay}: one live Put, read back from its record, to `set`. */
export function readBackRef(cursors: readonly SegmentCursor[], ref: number, set: (key: string, value: Uint8Array) => void): void {
  cursors[ref % 65536]!.putAt(Math.floor(ref / 65536), set);
}
