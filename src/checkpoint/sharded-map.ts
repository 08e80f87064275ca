/**
 * A Map from string keys split over up to {@link SHARDS} Maps by a hash of the key.
 *
 * Why not one Map: V8 caps a Map at 2^24 (16,777,216) entries, and a Map that outgrows its
 * table rehashes everything it holds in one synchronous step (~75 ms at a million keys,
 * measured here) — a store with more keys than that would throw, and one that grows stalls
 * its event loop. Split 256 ways, each part holds 1/256 of the keys: the cap is 2^32 keys and
 * a growth step rehashes 1/256 of them.
 *
 * Iteration goes shard by shard: the order is not insertion order (nothing relies on it).
 */
/** What corewal needs of a string-keyed map: a `Map` or a {@link ShardedMap}. */
export interface StringMap<V> extends Iterable<[string, V]> {
  readonly size: number;
  get(k: string): V | undefined;
  has(k: string): boolean;
  set(k: string, v: V): unknown;
  delete(k: string): boolean;
  entries(): IterableIterator<[string, V]>;
  keys(): IterableIterator<string>;
}

export class ShardedMap<V> implements StringMap<V> {
  private readonly shards: (Map<string, V> | undefined)[] = new Array(SHARDS);
  private count = 0;

  get size(): number { return this.count; }

  get(k: string): V | undefined {
    return this.shards[shardOf(k)]?.get(k);
  }

  has(k: string): boolean {
    return this.shards[shardOf(k)]?.has(k) ?? false;
  }

  set(k: string, v: V): this {
    const i = shardOf(k);
    let m = this.shards[i];
    if (m === undefined) this.shards[i] = m = new Map();
    const before = m.size;
    m.set(k, v);
    this.count += m.size - before;
    return this;
  }

  delete(k: string): boolean {
    const m = this.shards[shardOf(k)];
    if (m === undefined || !m.delete(k)) return false;
    this.count--;
    return true;
  }

  clear(): void {
    this.shards.fill(undefined);
    this.count = 0;
  }

  *entries(): IterableIterator<[string, V]> {
    for (const m of this.shards) if (m !== undefined) yield* m;
  }

  *keys(): IterableIterator<string> {
    for (const m of this.shards) if (m !== undefined) yield* m.keys();
  }

  [Symbol.iterator](): IterableIterator<[string, V]> { return this.entries(); }
}

/** A set of strings on {@link ShardedMap}, for the same two reasons. */
export class ShardedSet implements Iterable<string> {
  private readonly map = new ShardedMap<true>();

  get size(): number { return this.map.size; }
  has(k: string): boolean { return this.map.has(k); }
  add(k: string): this { this.map.set(k, true); return this; }
  delete(k: string): boolean { return this.map.delete(k); }
  clear(): void { this.map.clear(); }
  [Symbol.iterator](): IterableIterator<string> { return this.map.keys(); }
}

const SHARDS = 256;
/** Keys up to this long are hashed whole; longer ones on their first and last HALF characters and every STRIDEth between. */
const HASHED = 128;
const HALF = HASHED >> 1;
const STRIDE = 8;

/** FNV-1a over the key's characters (bytes: map keys are latin1), folded to a shard index. */
function shardOf(k: string): number {
  const n = k.length;
  let h = 0x811c9dc5 ^ n;
  if (n <= HASHED) {
    for (let i = 0; i < n; i++) h = Math.imul(h ^ k.charCodeAt(i), 0x01000193);
  } else {
    // A bounded cost for long keys; a key that differs only between the samples shares a shard.
    for (let i = 0; i < HALF; i++) h = Math.imul(h ^ k.charCodeAt(i), 0x01000193);
    for (let i = HALF; i < n - HALF; i += STRIDE) h = Math.imul(h ^ k.charCodeAt(i), 0x01000193);
    for (let i = n - HALF; i < n; i++) h = Math.imul(h ^ k.charCodeAt(i), 0x01000193);
  }
  return (h ^ (h >>> 16) ^ (h >>> 8)) & (SHARDS - 1);
}
