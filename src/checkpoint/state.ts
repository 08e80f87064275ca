import { PerCoreWalError } from '../errors/errors.js';
import { assert } from '../util/assert.js';
import { ShardedMap, ShardedSet, type StringMap } from './sharded-map.js';

/**
 * A read-only view of key/value state: what a checkpoint holds, or what recovery
 * rebuilt. Keys are bytes; a string key means its UTF-8 bytes.
 *
 * @example
 * ```ts
 * const { state } = recoverPerCore('/data/wal', '/data/checkpoints', 4);
 * state.get('user:1');                       // Uint8Array | undefined
 * for (const [key, value] of state.entries()) console.log(key, value);
 * ```
 */
export interface StateView {
  get(key: Uint8Array | string): Uint8Array | undefined;
  has(key: Uint8Array | string): boolean;
  readonly size: number;
  entries(): IterableIterator<[Uint8Array, Uint8Array]>;
}

/**
 * The map key of a byte key: one latin1 character per byte, so every byte string maps to
 * a distinct JS string (V8 stores it one byte per character) and back without loss.
 */
export function mapKey(key: Uint8Array): string {
  if (Buffer.isBuffer(key)) return key.toString('latin1');
  return Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('latin1');
}

/** `mapKey` for a caller's key: a string is taken as its UTF-8 bytes. */
export function userMapKey(key: Uint8Array | string, what = 'key'): string {
  if (typeof key === 'string') return Buffer.from(key, 'utf8').toString('latin1');
  if (key instanceof Uint8Array) return mapKey(key);
  throw new PerCoreWalError('INVALID_ARGUMENT', `${what} must be a Uint8Array or a string, got ${key === null ? 'null' : typeof key}`);
}

/** The bytes of a map key. */
export function keyBytes(k: string): Buffer {
  return Buffer.from(k, 'latin1');
}

/**
 * Mutable key/value state with a record of the keys changed since the last
 * {@link KvState.clearDirty}, which is what an incremental checkpoint stores.
 * Values are kept as given: callers hand over buffers nobody else will change.
 *
 * A checkpoint that merged many changes off to the side hands them over at once as an
 * overlay ({@link KvState.installOverlay}), which wins over the map and is folded into it
 * in slices ({@link KvState.foldSome}): taking the changes costs nothing on the spot, and
 * folding them costs what they are, not what the whole state is.
 */
export class KvState implements StateView {
  /** @internal The state, less what `over` changes. Sharded: a store may hold more keys than one Map can. */
  readonly map = new ShardedMap<Uint8Array>();
  /** @internal Changes not yet folded into `map`, by map key: the value, or null for deleted. Null when there are none. */
  over: StringMap<Uint8Array | null> | null = null;
  /** Keys present, while `over` is not null (then `map.size` is not the state's size). */
  private overSize = 0;
  /** @internal Keys set or deleted since the last checkpoint. */
  readonly dirty = new ShardedSet();
  /** @internal False while the next checkpoint is due to be full: then nobody needs the dirty set. */
  trackDirty = true;
  /** @internal Bumped by every change: tells a checkpoint written in slices whether the state moved under it. */
  changes = 0;

  get size(): number { return this.over === null ? this.map.size : this.overSize; }

  get(key: Uint8Array | string): Uint8Array | undefined {
    return this.getByMapKey(userMapKey(key));
  }

  has(key: Uint8Array | string): boolean {
    return this.getByMapKey(userMapKey(key)) !== undefined;
  }

  /** @internal */
  getByMapKey(k: string): Uint8Array | undefined {
    const over = this.over;
    if (over !== null) {
      const v = over.get(k);
      if (v !== undefined) return v ?? undefined;
    }
    return this.map.get(k);
  }

  /** @internal Sets by map key, marking it dirty. */
  setKey(k: string, value: Uint8Array): void {
    const over = this.over;
    if (over === null) {
      this.map.set(k, value);
    } else {
      if (this.getByMapKey(k) === undefined) this.overSize++;
      over.set(k, value);
    }
    this.changes++;
    if (this.trackDirty) this.dirty.add(k);
  }

  /** @internal Deletes by map key, marking it dirty (even if absent: the parent may hold it). */
  deleteKey(k: string): void {
    const over = this.over;
    if (over === null) {
      this.map.delete(k);
    } else {
      if (this.getByMapKey(k) !== undefined) this.overSize--;
      over.set(k, null);
    }
    this.changes++;
    if (this.trackDirty) this.dirty.add(k);
  }

  clearDirty(): void { this.dirty.clear(); }

  /**
   * @internal Takes `changes` over at once (owning the map: folding empties it), `size`
   * being the number of keys present with them applied; the dirty set is the caller's
   * business. Folds whatever an earlier overlay still holds first.
   */
  installOverlay(changes: StringMap<Uint8Array | null>, size: number): void {
    this.foldSome(Infinity);
    assert(Number.isSafeInteger(size) && size >= 0, 'an overlay comes with the size of the state it makes');
    if (changes.size === 0) {
      assert(size === this.map.size, 'no changes, same size');
      return;
    }
    this.over = changes;
    this.overSize = size;
    this.changes++;
  }

  /**
   * @internal Moves up to `n` changes of the overlay into the map (the state seen does not
   * change); true once none is left.
   */
  foldSome(n: number): boolean {
    const over = this.over;
    if (over === null) return true;
    const map = this.map;
    let i = 0;
    for (const [k, v] of over) {
      if (i++ >= n) return false;
      if (v === null) map.delete(k); else map.set(k, v);
      over.delete(k);
    }
    assert(map.size === this.overSize, `the folded map holds the keys the overlay counted (${map.size} vs ${this.overSize})`);
    this.over = null;
    return true;
  }

  *entries(): IterableIterator<[Uint8Array, Uint8Array]> {
    for (const [k, v] of this.mapEntries()) yield [keyBytes(k), v];
  }

  *keys(): IterableIterator<Uint8Array> {
    for (const [k] of this.mapEntries()) yield keyBytes(k);
  }

  /** @internal The entries by map key, the overlay's applied. */
  *mapEntries(): IterableIterator<[string, Uint8Array]> {
    const over = this.over;
    if (over === null) {
      yield* this.map;
      return;
    }
    for (const e of this.map) if (!over.has(e[0])) yield e;
    for (const [k, v] of over) if (v !== null) yield [k, v];
  }

  [Symbol.iterator](): IterableIterator<[Uint8Array, Uint8Array]> { return this.entries(); }
}
