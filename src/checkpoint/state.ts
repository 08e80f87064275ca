import { PerCoreWalError } from '../errors/errors.js';

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
 */
export class KvState implements StateView {
  /** @internal Replaced whole by {@link KvState.replaceMap}: hold the KvState, not the map. */
  map = new Map<string, Uint8Array>();
  /** @internal Keys set or deleted since the last checkpoint. */
  readonly dirty = new Set<string>();
  /** @internal False while the next checkpoint is due to be full: then nobody needs the dirty set. */
  trackDirty = true;
  /** @internal Bumped by every change: tells a checkpoint written in slices whether the state moved under it. */
  changes = 0;

  get size(): number { return this.map.size; }

  get(key: Uint8Array | string): Uint8Array | undefined {
    return this.map.get(userMapKey(key));
  }

  has(key: Uint8Array | string): boolean {
    return this.map.has(userMapKey(key));
  }

  /** @internal Sets by map key, marking it dirty. */
  setKey(k: string, value: Uint8Array): void {
    this.map.set(k, value);
    this.changes++;
    if (this.trackDirty) this.dirty.add(k);
  }

  /** @internal Deletes by map key, marking it dirty (even if absent: the parent may hold it). */
  deleteKey(k: string): void {
    this.map.delete(k);
    this.changes++;
    if (this.trackDirty) this.dirty.add(k);
  }

  clearDirty(): void { this.dirty.clear(); }

  /** @internal Switches to `map` at once (a checkpoint built it in slices); the dirty set is the caller's business. */
  replaceMap(map: Map<string, Uint8Array>): void {
    this.map = map;
    this.changes++;
  }

  *entries(): IterableIterator<[Uint8Array, Uint8Array]> {
    for (const [k, v] of this.map) yield [keyBytes(k), v];
  }

  *keys(): IterableIterator<Uint8Array> {
    for (const k of this.map.keys()) yield keyBytes(k);
  }

  [Symbol.iterator](): IterableIterator<[Uint8Array, Uint8Array]> { return this.entries(); }
}
