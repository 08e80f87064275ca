import { dirname, join } from 'node:path';
import type { U64Like } from '../entry/entry.js';
import { ioError, PerCoreWalError } from '../errors/errors.js';
import { fsyncOffThread, realFs, type WalFs } from '../io/fs.js';
import { requireBytes, toI64, toPosition, toU64 } from '../util/u64.js';
import {
  CheckpointFileWriter, encodeMeta, FLAG_INCREMENTAL, FLAG_WATERMARK, type CheckpointMetadata,
} from './format.js';
import {
  checkpointFileName, listCheckpointFiles, listTempFiles, loadNewestValid, readCheckpointMeta, resolveCheckpoint, TMP_SUFFIX,
} from './files.js';
import { applyStaged, type StagedChanges } from './staged-merge.js';
import { KvState, mapKey, userMapKey, type StateView } from './state.js';

/** A checkpoint file being written under its temporary name. */
interface TempFile { fd: number; tmp: string; w: CheckpointFileWriter }

/** Overlay entries folded into the state's map between two looks at the clock (see createCheckpointStaged). */
const FOLD_STEP = 1024;
/** How long a background fold keeps the thread before giving the event loop a turn. */
const FOLD_SLICE_MS = 1;

export interface CheckpointStoreOptions {
  /** Directory of checkpoint files; created if missing. */
  checkpointDir: string;
  /** Checkpoints kept after each `createCheckpoint` (plus those they depend on). Default 3; `Infinity` keeps all. */
  maxRetained?: number;
  /** Every `fullEvery`-th checkpoint is a full snapshot, the others incremental. Default 8; 1 makes every one full. */
  fullEvery?: number;
  /** File layer; default Node's fs. */
  fs?: WalFs;
  /** Told about every checkpoint skipped because it failed validation, and other non-fatal findings. */
  onWarning?: (message: string) => void;
}

export interface CreateCheckpointOptions {
  /** Epoch of the checkpoint: WAL entries of lower epochs are in it. Default: the previous checkpoint's (0 without one). */
  epoch?: U64Like;
  /** Per core, the segment position when the checkpoint was taken. */
  walPositions?: readonly number[];
  /** Per core, the next sequence its writer will assign (same length as `walPositions`). */
  nextSequences?: readonly U64Like[];
  /** Per core, the stored CRC of the record ending at `walPositions[c]` (0: none; same length). */
  barrierCrcs?: readonly number[];
  /** Write a full snapshot even if an incremental one is due. */
  full?: boolean;
}

/** A checkpoint loaded with its whole chain. */
export interface LoadedCheckpoint {
  metadata: CheckpointMetadata;
  /** Full checkpoint first, `metadata` last. */
  chain: CheckpointMetadata[];
  state: StateView;
  sourceOffsets: Map<string, bigint>;
  watermark: bigint | null;
}

const DEFAULT_MAX_RETAINED = 3;
const DEFAULT_FULL_EVERY = 8;

/**
 * The materialised key/value state behind checkpoints, with source offsets and a
 * watermark, and the checkpoint files that make it durable.
 *
 * Opening loads the newest checkpoint that validates (skipping, with a warning, any newer
 * one with a bad checksum, a torn file or a missing parent). Each `createCheckpoint`
 * writes one file crash-safely — temporary name, fsync, rename, fsync of the directory —
 * so a crash leaves the previous checkpoint or the new one, never a broken one in its
 * place. Checkpoints are incremental: a file holds only the keys set or deleted since its
 * parent, with a full snapshot every `fullEvery` checkpoints.
 *
 * Values loaded from checkpoint files are views into the file's buffer: copy one you keep
 * long after the state that held it is gone (`Buffer.from(value)`).
 *
 * @example
 * ```ts
 * const store = CheckpointStore.open({ checkpointDir: '/data/checkpoints', fullEvery: 4 });
 * store.put(Buffer.from('user:1'), Buffer.from('Ada'));
 * store.setSourceOffset('orders-0', 1042n);
 * store.createCheckpoint(1n, { epoch: 5n });
 * store.delete(Buffer.from('user:1'));
 * store.createCheckpoint(2n, { epoch: 9n });       // incremental: one delete record
 * CheckpointStore.open({ checkpointDir: '/data/checkpoints' }).get('user:1'); // undefined
 * ```
 */
export class CheckpointStore {
  private readonly dir: string;
  private readonly fs: WalFs;
  private readonly maxRetained: number;
  private readonly fullEvery: number;
  private readonly warnHook: ((message: string) => void) | undefined;
  private readonly warningList: string[] = [];
  private kv: KvState;
  private offsets: Map<string, bigint>;
  private wm: bigint | null;
  /** The checkpoint the in-memory state was loaded from or last written as; parent of the next incremental one. */
  private base: CheckpointMetadata | null;
  /** Incremental checkpoints since the last full one, `base` included. */
  private depth: number;
  /** True when the next checkpoint must be full (its would-be parent is gone). */
  private fullNext = false;
  /** True while a staged checkpoint's overlay is being folded in the background. */
  private folding = false;

  private constructor(dir: string, fs: WalFs, maxRetained: number, fullEvery: number, warn: ((m: string) => void) | undefined) {
    this.dir = dir;
    this.fs = fs;
    this.maxRetained = maxRetained;
    this.fullEvery = fullEvery;
    this.warnHook = warn;
    this.kv = new KvState();
    this.offsets = new Map();
    this.wm = null;
    this.base = null;
    this.depth = 0;
  }

  /** Opens (creating if needed) a checkpoint directory and loads its newest valid checkpoint. */
  static open(options: CheckpointStoreOptions): CheckpointStore {
    if (options === null || typeof options !== 'object') throw new PerCoreWalError('INVALID_ARGUMENT', 'options must be an object with checkpointDir');
    const dir = options.checkpointDir;
    if (typeof dir !== 'string' || dir.length === 0) throw new PerCoreWalError('INVALID_ARGUMENT', 'checkpointDir must be a non-empty string');
    const maxRetained = options.maxRetained ?? DEFAULT_MAX_RETAINED;
    if (maxRetained !== Infinity && (!Number.isSafeInteger(maxRetained) || maxRetained < 1)) {
      throw new PerCoreWalError('INVALID_ARGUMENT', `maxRetained must be a positive integer or Infinity, got ${String(maxRetained)}`);
    }
    const fullEvery = options.fullEvery ?? DEFAULT_FULL_EVERY;
    if (!Number.isSafeInteger(fullEvery) || fullEvery < 1) throw new PerCoreWalError('INVALID_ARGUMENT', `fullEvery must be a positive integer, got ${String(fullEvery)}`);
    if (options.onWarning !== undefined && typeof options.onWarning !== 'function') throw new PerCoreWalError('INVALID_ARGUMENT', 'onWarning must be a function');
    const fs = options.fs ?? realFs;
    const store = new CheckpointStore(dir, fs, maxRetained, fullEvery, options.onWarning);
    try {
      // A directory made here must survive a crash, or a crash could take every checkpoint
      // with it after the WAL was reset: fsync the parent of each one created.
      const missing: string[] = [];
      for (let d = dir; !fs.existsSync(d) && dirname(d) !== d; d = dirname(d)) missing.push(d);
      if (missing.length > 0) {
        fs.mkdirSync(dir, { recursive: true });
        for (const d of missing) fs.fsyncDir(dirname(d));
      }
    } catch (e) {
      throw ioError('create directory', e, dir);
    }
    // Only this store writes the directory: a temporary file is a checkpoint a crash interrupted.
    for (const tmp of listTempFiles(dir, fs)) {
      try {
        fs.unlinkSync(tmp);
        store.warn(`removed ${tmp}, left by a checkpoint that did not complete`);
      } catch (e) {
        throw ioError('unlink', e, tmp);
      }
    }
    const loaded = loadNewestValid(dir, fs, (m) => store.warn(m));
    if (loaded !== null) {
      store.kv = loaded.state;
      store.offsets = new Map(loaded.metadata.sourceOffsets);
      store.wm = loaded.metadata.watermark;
      store.base = loaded.metadata;
      store.depth = loaded.chain.length - 1;
    }
    store.updateTracking();
    return store;
  }

  /** The checkpoint directory. */
  checkpointDir(): string { return this.dir; }

  /** Messages about skipped checkpoints and cleaned-up leftovers, oldest first. */
  warnings(): readonly string[] { return this.warningList; }

  /** The current state (live: it changes with `put` and `delete`). */
  state(): StateView { return this.kv; }

  get size(): number { return this.kv.size; }

  get(key: Uint8Array | string): Uint8Array | undefined { return this.kv.get(key); }

  has(key: Uint8Array | string): boolean { return this.kv.has(key); }

  /** Sets `key` to a copy of `value`. A string key means its UTF-8 bytes. */
  put(key: Uint8Array | string, value: Uint8Array): void {
    const k = userMapKey(key);
    requireBytes(value, 'value');
    this.kv.setKey(k, Buffer.from(value));
  }

  delete(key: Uint8Array | string): void {
    this.kv.deleteKey(userMapKey(key));
  }

  /** @internal For the coordinator and recovery: takes ownership of `value` (no copy). */
  putOwned(key: Uint8Array, value: Uint8Array): void { this.kv.setKey(mapKey(key), value); }

  /** @internal */
  deleteBytes(key: Uint8Array): void { this.kv.deleteKey(mapKey(key)); }

  /** @internal By map key (one latin1 character per byte), taking ownership of `value`. */
  putByMapKey(key: string, value: Uint8Array): void { this.kv.setKey(key, value); }

  /** @internal */
  deleteByMapKey(key: string): void { this.kv.deleteKey(key); }

  setSourceOffset(source: string, offset: U64Like): void {
    if (typeof source !== 'string') throw new PerCoreWalError('INVALID_ARGUMENT', 'source must be a string');
    if (Buffer.byteLength(source) > 0xffff) throw new PerCoreWalError('INVALID_ARGUMENT', 'source name longer than 65535 bytes');
    this.offsets.set(source, toI64(offset, `offset of ${source}`));
    this.kv.changes++;
  }

  /** A copy of the source offsets. */
  sourceOffsets(): Map<string, bigint> { return new Map(this.offsets); }

  setWatermark(watermark: U64Like | null): void {
    this.wm = watermark === null ? null : toI64(watermark, 'watermark');
    this.kv.changes++;
  }

  watermark(): bigint | null { return this.wm; }

  /** The newest checkpoint the state derives from (loaded or written by this store), or null. */
  latestCheckpoint(): CheckpointMetadata | null { return this.base; }

  /**
   * Writes the current state as checkpoint `id` (greater than the latest one's) and
   * returns its metadata once it is durable. Incremental when a parent exists and a
   * full snapshot is not due. Then removes checkpoints beyond `maxRetained`.
   */
  createCheckpoint(id: U64Like, options: CreateCheckpointOptions = {}): CheckpointMetadata {
    const plan = this.plan(id, options, this.offsets, this.wm, this.kv.size);
    const incremental = plan.meta.isIncremental;
    const kv = this.kv;
    const written = this.writeFile(plan.path, plan.meta, incremental, (w) => {
      if (incremental) {
        for (const k of kv.dirty) {
          const v = kv.getByMapKey(k);
          if (v === undefined) w.delete(k); else w.put(k, v);
        }
      } else {
        for (const [k, v] of kv.mapEntries()) w.put(k, v);
      }
    });
    return this.adopt(plan, written);
  }

  /**
   * @internal For `CoreWalPool`: {@link CheckpointStore.createCheckpoint} of the state with
   * `staged` applied, without stopping the thread for long. The checkpoint file is
   * written in slices (`pause` is awaited between them, and gives the event loop a turn)
   * from the state and `staged` together, while the store still shows the state without
   * them; once the file is durable, `staged` is applied and the checkpoint adopted in
   * one synchronous step, so nobody sees a part of it. Should the store change
   * meanwhile (a `put`, `setWatermark`, another checkpoint…), the file may not match it:
   * it is then dropped and the checkpoint written synchronously instead.
   */
  async createCheckpointStaged(id: U64Like, options: CreateCheckpointOptions, staged: StagedChanges, pause: () => Promise<void>): Promise<CheckpointMetadata> {
    const kv = this.kv;
    // What an earlier checkpoint left in the overlay goes into the map first, so that the
    // file below is written from the map and the staged changes alone.
    while (!kv.foldSome(FOLD_STEP)) await pause();
    const map = kv.map;
    const before = { changes: kv.changes, base: this.base, fullNext: this.fullNext, depth: this.depth };
    const moved = (): boolean =>
      kv.changes !== before.changes || this.base !== before.base || this.fullNext !== before.fullNext || this.depth !== before.depth;
    const offsets = new Map(this.offsets);
    for (const [name, off] of staged.offsets) offsets.set(name, off);
    const wm = staged.watermark !== undefined ? staged.watermark : this.wm;
    let keyCount = map.size;
    let i = 0;
    for (const [k, v] of staged.kv) {
      const had = map.has(k);
      if (v === null) { if (had) keyCount--; } else if (!had) keyCount++;
      if ((++i & 1023) === 0) await pause();
    }
    if (moved()) return this.applyThenCheckpoint(id, options, staged);
    const plan = this.plan(id, options, offsets, wm, keyCount);
    const incremental = plan.meta.isIncremental;
    const written = await this.writeFileSliced(plan.path, plan.meta, incremental, moved, async (w) => {
      let n = 0;
      // The keys changed since the last checkpoint that the merge does not change, then the merge's.
      for (const k of incremental ? kv.dirty : map.keys()) {
        if (staged.kv.has(k)) continue;
        const v = map.get(k);
        if (v === undefined) w.delete(k); else w.put(k, v);
        if ((++n & 1023) === 0) { await pause(); if (moved()) return false; }
      }
      for (const [k, v] of staged.kv) {
        if (v !== null) w.put(k, v); else if (incremental) w.delete(k);
        if ((++n & 1023) === 0) { await pause(); if (moved()) return false; }
      }
      return true;
    });
    if (written === null) return this.applyThenCheckpoint(id, options, staged);
    // The file is durable; from here to the return nothing yields. The store takes the
    // merge as an overlay (no work now, whatever its size) and folds it in slices after.
    this.offsets = offsets;
    this.wm = wm;
    kv.installOverlay(staged.kv, keyCount);
    const meta = this.adopt(plan, written);
    this.foldInSlices();
    return meta;
  }

  /**
   * Folds the overlay into the map in the background, giving the event loop a turn every
   * FOLD_SLICE_MS; one fold at a time. Nothing waits for it: the state reads the same
   * before and after, and the next staged checkpoint finishes what is left.
   */
  private foldInSlices(): void {
    if (this.folding || this.kv.over === null) return;
    this.folding = true;
    const kv = this.kv;
    const slice = (): void => {
      const until = performance.now() + FOLD_SLICE_MS;
      for (;;) {
        if (kv.foldSome(FOLD_STEP)) {
          this.folding = false;
          return;
        }
        if (performance.now() >= until) break;
      }
      setImmediate(slice);
    };
    setImmediate(slice);
  }

  private applyThenCheckpoint(id: U64Like, options: CreateCheckpointOptions, staged: StagedChanges): CheckpointMetadata {
    applyStaged(this, staged);
    return this.createCheckpoint(id, options);
  }

  /** Checks a checkpoint's id and options against the latest one and says what it will be. */
  private plan(id: U64Like, options: CreateCheckpointOptions, offsets: Map<string, bigint>, wm: bigint | null, keyCount: number) {
    const cid = toU64(id, 'checkpoint id');
    if (options === null || typeof options !== 'object') throw new PerCoreWalError('INVALID_ARGUMENT', 'options must be an object');
    const base = this.base;
    if (base !== null && cid <= base.id) {
      throw new PerCoreWalError('INVALID_ARGUMENT', `checkpoint id ${cid} must be greater than the latest checkpoint's, ${base.id}`, { path: this.dir });
    }
    const epoch = options.epoch === undefined ? (base?.epoch ?? 0n) : toU64(options.epoch, 'epoch');
    if (base !== null && epoch < base.epoch) {
      throw new PerCoreWalError('EPOCH_MISMATCH', `checkpoint epoch ${epoch} is below the latest checkpoint's, ${base.epoch}`, { path: this.dir });
    }
    const walPositions = (options.walPositions ?? []).map((p, c) => toPosition(p, `walPositions[${c}]`));
    const nextSequences = (options.nextSequences ?? walPositions.map(() => 0n)).map((s, c) => toU64(s, `nextSequences[${c}]`));
    const barrierCrcs = (options.barrierCrcs ?? walPositions.map(() => 0)).map((x, c) => {
      if (!Number.isInteger(x) || x < 0 || x > 0xffffffff) throw new PerCoreWalError('INVALID_ARGUMENT', `barrierCrcs[${c}] must be a u32, got ${String(x)}`);
      return x;
    });
    if (nextSequences.length !== walPositions.length || barrierCrcs.length !== walPositions.length) {
      throw new PerCoreWalError('INVALID_ARGUMENT',
        `walPositions, nextSequences and barrierCrcs must have one entry per core (${walPositions.length}, ${nextSequences.length}, ${barrierCrcs.length})`);
    }
    const incremental = !this.nextIsFull() && options.full !== true;
    const meta = {
      id: cid, epoch, timestamp: BigInt(Date.now()), walPositions, nextSequences, barrierCrcs,
      sourceOffsets: new Map(offsets), watermark: wm, keyCount,
      isIncremental: incremental, parentId: incremental ? base!.id : null,
    };
    return { meta, path: join(this.dir, checkpointFileName(cid)) };
  }

  /** Makes a written (durable) checkpoint the latest one. */
  private adopt(plan: ReturnType<CheckpointStore['plan']>, written: { sizeBytes: number; bodyCrc: number; recordCount: number }): CheckpointMetadata {
    const full: CheckpointMetadata = { ...plan.meta, sizeBytes: written.sizeBytes, changeCount: written.recordCount, checksum: written.bodyCrc, path: plan.path };
    this.kv.clearDirty();
    this.base = full;
    this.depth = plan.meta.isIncremental ? this.depth + 1 : 0;
    this.fullNext = false;
    this.updateTracking();
    if (this.maxRetained !== Infinity) this.retain(this.maxRetained, false);
    return full;
  }

  /**
   * {@link CheckpointStore.writeFile} with records written by an async `records`, which
   * stops early (false) when the state changed under it, and the fsync off the thread:
   * when the state changed (`moved`) before either ends, the temporary file goes and the
   * result is null. Once the file is renamed into place nothing awaits any more.
   */
  private async writeFileSliced(
    path: string, meta: Parameters<typeof encodeMeta>[0], incremental: boolean, moved: () => boolean,
    records: (w: CheckpointFileWriter) => Promise<boolean>,
  ): Promise<{ sizeBytes: number; bodyCrc: number; recordCount: number } | null> {
    const f = this.beginFile(path, meta, incremental);
    let result;
    try {
      if (!(await records(f.w))) {
        this.abandonFile(f);
        return null;
      }
      result = f.w.finish();
      // The one step that takes milliseconds for a large file; the event loop goes on meanwhile.
      await fsyncOffThread(this.fs, f.fd).catch((e: unknown) => { throw ioError('fsync', e, f.tmp); });
    } catch (e) {
      this.abandonFile(f);
      throw e;
    }
    if (moved()) {
      this.abandonFile(f);
      return null;
    }
    this.publish(f.fd, f.tmp, path);
    return result;
  }

  private writeFile(
    path: string, meta: Parameters<typeof encodeMeta>[0], incremental: boolean, records: (w: CheckpointFileWriter) => void,
  ): { sizeBytes: number; bodyCrc: number; recordCount: number } {
    const f = this.beginFile(path, meta, incremental);
    try {
      records(f.w);
    } catch (e) {
      this.abandonFile(f);
      throw e;
    }
    return this.finishFile(f, path);
  }

  /** Opens `path`'s temporary file and starts a checkpoint file in it. */
  private beginFile(path: string, meta: Parameters<typeof encodeMeta>[0], incremental: boolean): TempFile {
    const tmp = path + TMP_SUFFIX;
    const fd = this.openTemp(tmp);
    try {
      return { fd, tmp, w: new CheckpointFileWriter(this.fs, fd, tmp, fileFlags(meta, incremental), encodeMeta(meta)) };
    } catch (e) {
      this.abandonFile({ fd, tmp });
      throw e;
    }
  }

  /** Ends the file, fsyncs it and renames it to `path`, durably. */
  private finishFile(f: TempFile, path: string): { sizeBytes: number; bodyCrc: number; recordCount: number } {
    let result;
    try {
      result = f.w.finish();
      fsyncTemp(this.fs, f.fd, f.tmp);
    } catch (e) {
      this.abandonFile(f);
      throw e;
    }
    this.publish(f.fd, f.tmp, path);
    return result;
  }

  private abandonFile(f: { fd: number; tmp: string }): void {
    closeQuietly(this.fs, f.fd);
    removeQuietly(this.fs, f.tmp);
  }

  private openTemp(tmp: string): number {
    try {
      return this.fs.openSync(tmp, 'w');
    } catch (e) {
      throw ioError('create', e, tmp);
    }
  }

  /** Closes the synced temporary file and renames it to `path`, durably. */
  private publish(fd: number, tmp: string, path: string): void {
    const fs = this.fs;
    try {
      fs.closeSync(fd);
    } catch (e) {
      removeQuietly(fs, tmp);
      throw ioError('close', e, tmp);
    }
    try {
      fs.renameSync(tmp, path);
    } catch (e) {
      removeQuietly(fs, tmp);
      throw ioError('rename', e, path);
    }
    try {
      fs.fsyncDir(this.dir);
    } catch (e) {
      // The rename may not be durable: the caller must not rely on this checkpoint (e.g. reset segments).
      throw ioError('fsync of directory', e, this.dir);
    }
  }

  /** Metadata of every checkpoint whose header validates, oldest first (bodies are checked when loaded). */
  listCheckpoints(): CheckpointMetadata[] {
    const out: CheckpointMetadata[] = [];
    for (const f of listCheckpointFiles(this.dir, this.fs)) {
      try {
        out.push(readCheckpointMeta(f.path, this.fs));
      } catch (e) {
        if (!(e instanceof PerCoreWalError) || (e.code !== 'CHECKPOINT_INVALID' && e.code !== 'CHECKPOINT_NOT_FOUND')) throw e;
      }
    }
    return out;
  }

  /** Loads checkpoint `id` with its chain, without changing the store's own state. */
  loadCheckpoint(id: U64Like): LoadedCheckpoint {
    const r = resolveCheckpoint(this.dir, this.fs, toU64(id, 'checkpoint id'));
    return { metadata: r.metadata, chain: r.chain, state: r.state, sourceOffsets: new Map(r.metadata.sourceOffsets), watermark: r.metadata.watermark };
  }

  /**
   * Keeps exactly the newest `keep` checkpoints (and the one the state derives from) and
   * deletes the rest, including files that fail validation. A kept incremental checkpoint
   * whose parent goes is first rewritten as a full snapshot of the same state (under the
   * same id, atomically), so no kept checkpoint ever loses what it needs; a crash at any
   * step leaves every kept checkpoint loadable.
   */
  cleanupOldCheckpoints(keep: number): void {
    this.retain(keep, true);
  }

  /**
   * Retention. `exact`: rewrite kept checkpoints whose parents go; otherwise keep those
   * parents too (what `maxRetained` does after each checkpoint: no rewriting).
   */
  private retain(keep: number, exact: boolean): void {
    if (!Number.isSafeInteger(keep) || keep < 1) throw new PerCoreWalError('INVALID_ARGUMENT', `keep must be a positive integer, got ${String(keep)}`);
    const files = listCheckpointFiles(this.dir, this.fs);
    const metas = new Map<bigint, CheckpointMetadata>();
    for (const f of files) {
      try {
        metas.set(f.id, readCheckpointMeta(f.path, this.fs));
      } catch (e) {
        if (!(e instanceof PerCoreWalError) || (e.code !== 'CHECKPOINT_INVALID' && e.code !== 'CHECKPOINT_NOT_FOUND')) throw e;
      }
    }
    const newest = [...metas.values()].sort((a, b) => (a.id > b.id ? -1 : a.id < b.id ? 1 : 0)).slice(0, keep);
    if (this.base !== null && !newest.some((m) => m.id === this.base!.id)) newest.push(this.base);
    const kept = new Set(newest.map((m) => m.id));
    if (exact) {
      // Oldest first: a rewritten checkpoint is then a present parent for the next one.
      for (const m of newest.sort((a, b) => (a.id < b.id ? -1 : 1))) {
        if (m.parentId === null || kept.has(m.parentId)) continue;
        try {
          this.rewriteFull(m);
        } catch (e) {
          if (!(e instanceof PerCoreWalError) || e.code !== 'CHECKPOINT_INVALID') throw e;
          // Not loadable, so not rewritable: keep what it names, and let loading skip it.
          this.warn(`kept the parents of checkpoint ${m.id}, which cannot be rewritten as a full one: ${e.message}`);
          for (let p = metas.get(m.parentId); p !== undefined && !kept.has(p.id); p = p.parentId === null ? undefined : metas.get(p.parentId)) kept.add(p.id);
        }
      }
    } else {
      for (const m of newest) {
        for (let p = m.parentId === null ? undefined : metas.get(m.parentId); p !== undefined && !kept.has(p.id); p = p.parentId === null ? undefined : metas.get(p.parentId)) kept.add(p.id);
      }
    }
    let removed = 0;
    for (const f of files) {
      if (kept.has(f.id)) continue;
      try {
        this.fs.unlinkSync(f.path);
      } catch (e) {
        throw ioError('unlink', e, f.path);
      }
      if (!metas.has(f.id)) this.warn(`removed checkpoint file ${f.path}, which failed validation`);
      removed++;
    }
    if (removed > 0) this.syncDir();
  }

  /** Replaces incremental checkpoint `m` by a full one holding the same state. */
  private rewriteFull(m: CheckpointMetadata): void {
    const resolved = resolveCheckpoint(this.dir, this.fs, m.id);
    const meta = { ...m, isIncremental: false, parentId: null };
    const written = this.writeFile(m.path, meta, false, (w) => {
      for (const [k, v] of resolved.state.map) w.put(k, v);
    });
    if (this.base !== null && this.base.id === m.id) {
      this.base = { ...meta, sizeBytes: written.sizeBytes, changeCount: written.recordCount, checksum: written.bodyCrc };
      this.depth = 0;
      this.updateTracking();
    }
  }

  /**
   * Deletes checkpoint `id`. Refused (`INVALID_ARGUMENT`) while another checkpoint
   * depends on it. Deleting the latest one makes the next checkpoint a full snapshot.
   */
  deleteCheckpoint(id: U64Like): void {
    const cid = toU64(id, 'checkpoint id');
    const files = listCheckpointFiles(this.dir, this.fs);
    const target = files.find((f) => f.id === cid);
    if (target === undefined) throw new PerCoreWalError('CHECKPOINT_NOT_FOUND', `checkpoint ${cid} not found in ${this.dir}`, { path: this.dir });
    const dependents: bigint[] = [];
    for (const f of files) {
      if (f.id <= cid) continue;
      try {
        if (readCheckpointMeta(f.path, this.fs).parentId === cid) dependents.push(f.id);
      } catch (e) {
        if (!(e instanceof PerCoreWalError) || e.code !== 'CHECKPOINT_INVALID') throw e;
      }
    }
    if (dependents.length > 0) {
      throw new PerCoreWalError('INVALID_ARGUMENT', `checkpoint ${cid} is needed by checkpoint(s) ${dependents.join(', ')}; delete those first`, { path: target.path });
    }
    try {
      this.fs.unlinkSync(target.path);
    } catch (e) {
      throw ioError('unlink', e, target.path);
    }
    this.syncDir();
    if (this.base !== null && this.base.id === cid) {
      // The in-memory state is unchanged, but the next checkpoint has no parent to be incremental on.
      const rest = listCheckpointFiles(this.dir, this.fs);
      this.base = null;
      for (let i = rest.length - 1; i >= 0 && this.base === null; i--) {
        try {
          this.base = readCheckpointMeta(rest[i]!.path, this.fs);
        } catch { /* keep looking */ }
      }
      this.fullNext = true;
      this.depth = 0;
      this.updateTracking();
    }
  }

  /** True when the next checkpoint will be a full snapshot whatever changes until then. */
  private nextIsFull(): boolean {
    return this.base === null || this.fullNext || this.depth + 1 >= this.fullEvery;
  }

  /** Changes are recorded for an incremental checkpoint only when one can come next. */
  private updateTracking(): void {
    const track = !this.nextIsFull();
    if (!track) this.kv.clearDirty();
    this.kv.trackDirty = track;
  }

  private syncDir(): void {
    try {
      this.fs.fsyncDir(this.dir);
    } catch (e) {
      throw ioError('fsync of directory', e, this.dir);
    }
  }

  private warn(message: string): void {
    this.warningList.push(message);
    this.warnHook?.(message);
  }
}

function fileFlags(meta: { watermark: bigint | null }, incremental: boolean): number {
  return (incremental ? FLAG_INCREMENTAL : 0) | (meta.watermark !== null ? FLAG_WATERMARK : 0);
}

function fsyncTemp(fs: WalFs, fd: number, tmp: string): void {
  try {
    fs.fsyncSync(fd);
  } catch (e) {
    throw ioError('fsync', e, tmp);
  }
}

function closeQuietly(fs: WalFs, fd: number): void {
  try { fs.closeSync(fd); } catch { /* the original failure is what gets reported */ }
}

function removeQuietly(fs: WalFs, path: string): void {
  try { fs.unlinkSync(path); } catch { /* a leftover temporary file is removed by the next open */ }
}
