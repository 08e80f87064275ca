import { crc32c } from '../crc/crc32c.js';
import { ioError, PerCoreWalError } from '../errors/errors.js';
import type { WalFs } from '../io/fs.js';
import { assert } from '../util/assert.js';

/**
 * Checkpoint file codec, format version 1 (docs/FORMAT.md, "Checkpoint files", is the
 * byte-by-byte reference).
 *
 * ```
 * header (40 bytes)
 *  0  8  magic "CWALCKPT"
 *  8  u16 version (1)
 * 10  u16 flags: bit 0 incremental, bit 1 watermark present
 * 12  u32 metaLength
 * 16  u64 bodyLength
 * 24  u64 recordCount
 * 32  u32 bodyCrc    CRC-32C of the body
 * 36  u32 headerCrc  CRC-32C of header bytes 0..36, then of the meta bytes
 * meta (metaLength bytes), then body (bodyLength bytes); nothing after it.
 * ```
 */
export const CHECKPOINT_MAGIC = Buffer.from('CWALCKPT', 'latin1');
export const CHECKPOINT_VERSION = 1;
export const CHECKPOINT_HEADER_SIZE = 40;
export const FLAG_INCREMENTAL = 1;
export const FLAG_WATERMARK = 2;
export const REC_PUT = 1;
export const REC_DELETE = 2;
const KNOWN_FLAGS = FLAG_INCREMENTAL | FLAG_WATERMARK;
/** Meta bytes per core: walPosition u64, nextSequence u64, barrierCrc u32. */
const PER_CORE = 20;
const TWO_32 = 4294967296;

/**
 * What one checkpoint records besides its key/value changes.
 * u64 values are `bigint`; positions, sizes and counts are `number`.
 */
export interface CheckpointMetadata {
  id: bigint;
  /** WAL entries of epochs below this are in the checkpoint; replay starts at this epoch. */
  epoch: bigint;
  /** Creation time, milliseconds since the Unix epoch. */
  timestamp: bigint;
  /** Per core, the segment position when the checkpoint was taken (before any reset). */
  walPositions: number[];
  /** Per core, the sequence its writer was to assign next: where sequences resume after a reset. */
  nextSequences: bigint[];
  /**
   * Per core, the stored CRC of the record ending at `walPositions[c]` (the checkpoint's
   * epoch barrier), 0 for none. Recovery replays a segment from `walPositions[c]` only if
   * that record is still there (the segment was not reset); otherwise from its start.
   */
  barrierCrcs: number[];
  sourceOffsets: Map<string, bigint>;
  watermark: bigint | null;
  /** Bytes of the checkpoint file. */
  sizeBytes: number;
  /** Keys in the state this checkpoint resolves to (its chain applied). */
  keyCount: number;
  /** Put and Delete records stored in this file (all keys for a full checkpoint). */
  changeCount: number;
  isIncremental: boolean;
  /** The checkpoint this one's changes apply to; null for a full checkpoint. */
  parentId: bigint | null;
  /** CRC-32C of the state records (the file body). */
  checksum: number;
  /** The checkpoint file. */
  path: string;
}

/** The metadata fields a writer supplies (the rest come from writing the file). */
export type CheckpointMetaInput = Omit<CheckpointMetadata, 'sizeBytes' | 'changeCount' | 'checksum' | 'path'>;

export interface CheckpointHeader {
  flags: number;
  metaLength: number;
  bodyLength: number;
  recordCount: number;
  bodyCrc: number;
  headerCrc: number;
}

function invalid(path: string, position: number, reason: string): PerCoreWalError {
  return new PerCoreWalError('CHECKPOINT_INVALID', `invalid checkpoint file ${path} at byte ${position}: ${reason}`, { path, position });
}

// ---- encoding -------------------------------------------------------------------

/** The meta section for `m`. Cold path. */
export function encodeMeta(m: CheckpointMetaInput): Buffer {
  assert(m.walPositions.length === m.nextSequences.length && m.walPositions.length === m.barrierCrcs.length, 'per-core fields of one length');
  const names = [...m.sourceOffsets.keys()].map((n) => Buffer.from(n, 'utf8'));
  let len = 8 * 6 + 4 + PER_CORE * m.walPositions.length + 4;
  for (const n of names) len += 2 + n.length + 8;
  const buf = Buffer.alloc(len);
  let p = 0;
  p = buf.writeBigUInt64LE(m.id, p);
  p = buf.writeBigUInt64LE(m.epoch, p);
  p = buf.writeBigUInt64LE(m.parentId ?? 0n, p);
  p = buf.writeBigUInt64LE(m.timestamp, p);
  p = buf.writeBigUInt64LE(BigInt(m.keyCount), p);
  p = buf.writeBigInt64LE(m.watermark ?? 0n, p);
  p = buf.writeUInt32LE(m.walPositions.length, p);
  for (let c = 0; c < m.walPositions.length; c++) {
    p = buf.writeBigUInt64LE(BigInt(m.walPositions[c]!), p);
    p = buf.writeBigUInt64LE(m.nextSequences[c]!, p);
    p = buf.writeUInt32LE(m.barrierCrcs[c]!, p);
  }
  p = buf.writeUInt32LE(names.length, p);
  let i = 0;
  for (const value of m.sourceOffsets.values()) {
    const n = names[i++]!;
    p = buf.writeUInt16LE(n.length, p);
    p += n.copy(buf, p);
    p = buf.writeBigInt64LE(value, p);
  }
  assert(p === len, 'meta length computed exactly');
  return buf;
}

function writeU64(buf: Buffer, off: number, v: number): void {
  const hi = Math.floor(v / TWO_32);
  buf.writeUInt32LE(v - hi * TWO_32, off);
  buf.writeUInt32LE(hi, off + 4);
}

function readU64Number(buf: Uint8Array, dv: DataView, off: number, path: string, what: string): number {
  const lo = dv.getUint32(off, true);
  const hi = dv.getUint32(off + 4, true);
  if (hi >= 0x200000) throw invalid(path, off, `${what} beyond 2^53`);
  return hi * TWO_32 + lo;
}

/**
 * Streams one checkpoint file to an open descriptor: header placeholder and meta first,
 * records through a fixed buffer (memory stays bounded whatever the state's size), then
 * the real header once the body's length and CRC are known. The caller fsyncs and renames.
 */
export class CheckpointFileWriter {
  private readonly buf: Buffer;
  private len = 0;
  /** File offset of buf[0]. */
  private at: number;
  private crc = 0;
  private records = 0;
  private readonly bodyStart: number;

  constructor(
    private readonly fs: WalFs, private readonly fd: number, private readonly path: string,
    private readonly flags: number, private readonly meta: Buffer, bufferSize = 1 << 20,
  ) {
    assert((flags & ~KNOWN_FLAGS) === 0, 'known checkpoint flags only');
    this.buf = Buffer.allocUnsafe(Math.max(bufferSize, 64));
    this.bodyStart = CHECKPOINT_HEADER_SIZE + meta.length;
    this.at = this.bodyStart;
    // The placeholder header is zeros: a file cut short here can never validate.
    this.writeFully(Buffer.alloc(CHECKPOINT_HEADER_SIZE), 0);
    this.writeFully(meta, CHECKPOINT_HEADER_SIZE);
  }

  /** A Put record; `key` is a map key (one latin1 character per byte). */
  put(key: string, value: Uint8Array): void {
    this.records++;
    if (!this.room(9 + key.length)) {
      this.direct(recordHead(REC_PUT, key.length));
      this.direct(Buffer.from(key, 'latin1'));
      const vl = Buffer.allocUnsafe(4);
      vl.writeUInt32LE(value.length, 0);
      this.direct(vl);
      this.direct(value);
      return;
    }
    const b = this.buf;
    let p = this.len;
    b[p] = REC_PUT;
    b.writeUInt32LE(key.length, p + 1);
    p += 5 + b.write(key, p + 5, 'latin1');
    b.writeUInt32LE(value.length, p);
    this.len = p + 4;
    if (value.length <= b.length - this.len) {
      b.set(value, this.len);
      this.len += value.length;
    } else {
      this.flush();
      this.direct(value);
    }
  }

  /** A Delete record. */
  delete(key: string): void {
    this.records++;
    if (!this.room(5 + key.length)) {
      this.direct(recordHead(REC_DELETE, key.length));
      this.direct(Buffer.from(key, 'latin1'));
      return;
    }
    const b = this.buf;
    const p = this.len;
    b[p] = REC_DELETE;
    b.writeUInt32LE(key.length, p + 1);
    this.len = p + 5 + b.write(key, p + 5, 'latin1');
  }

  /** Writes the rest and the final header; returns the file's size, body CRC and record count. */
  finish(): { sizeBytes: number; bodyCrc: number; recordCount: number } {
    this.flush();
    const bodyLength = this.at - this.bodyStart;
    const h = Buffer.alloc(CHECKPOINT_HEADER_SIZE);
    CHECKPOINT_MAGIC.copy(h, 0);
    h.writeUInt16LE(CHECKPOINT_VERSION, 8);
    h.writeUInt16LE(this.flags, 10);
    h.writeUInt32LE(this.meta.length, 12);
    writeU64(h, 16, bodyLength);
    writeU64(h, 24, this.records);
    h.writeUInt32LE(this.crc, 32);
    h.writeUInt32LE(crc32c(this.meta, 0, this.meta.length, crc32c(h, 0, 36)), 36);
    this.writeFully(h, 0);
    return { sizeBytes: this.at, bodyCrc: this.crc, recordCount: this.records };
  }

  /** Makes room for `n` bytes in the buffer; false (buffer flushed) when they can never fit. */
  private room(n: number): boolean {
    if (this.buf.length - this.len < n) this.flush();
    return n <= this.buf.length;
  }

  /** Writes `data` straight to the file after the flushed buffer (records larger than the buffer). */
  private direct(data: Uint8Array): void {
    this.crc = crc32c(data, 0, data.length, this.crc);
    this.writeFully(data, this.at);
    this.at += data.length;
  }

  private flush(): void {
    if (this.len === 0) return;
    this.crc = crc32c(this.buf, 0, this.len, this.crc);
    this.writeFully(this.buf.subarray(0, this.len), this.at);
    this.at += this.len;
    this.len = 0;
  }

  private writeFully(data: Uint8Array, at: number): void {
    try {
      for (let done = 0; done < data.length;) {
        const n = this.fs.writeSync(this.fd, data, done, data.length - done, at + done);
        if (n <= 0) throw new Error(`write returned ${n}`);
        done += n;
      }
    } catch (e) {
      throw ioError('write', e, this.path, at);
    }
  }
}

function recordHead(kind: number, keyLength: number): Buffer {
  const h = Buffer.allocUnsafe(5);
  h[0] = kind;
  h.writeUInt32LE(keyLength, 1);
  return h;
}

// ---- decoding -------------------------------------------------------------------

/**
 * Validates the fixed header against the file's length. `buf` holds at least the first
 * `CHECKPOINT_HEADER_SIZE` bytes (or the whole file, if shorter).
 */
export function decodeHeader(buf: Uint8Array, fileLen: number, path: string): CheckpointHeader {
  if (fileLen < CHECKPOINT_HEADER_SIZE || buf.length < CHECKPOINT_HEADER_SIZE) {
    throw invalid(path, 0, `file of ${fileLen} bytes is shorter than the ${CHECKPOINT_HEADER_SIZE}-byte header`);
  }
  for (let i = 0; i < CHECKPOINT_MAGIC.length; i++) {
    if (buf[i] !== CHECKPOINT_MAGIC[i]) throw invalid(path, 0, 'bad magic (not a corewal checkpoint, or a file cut before its header was written)');
  }
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const version = dv.getUint16(8, true);
  if (version !== CHECKPOINT_VERSION) throw invalid(path, 8, `unknown checkpoint format version ${version}`);
  const flags = dv.getUint16(10, true);
  if ((flags & ~KNOWN_FLAGS) !== 0) throw invalid(path, 10, `unknown flags 0x${flags.toString(16)}`);
  const metaLength = dv.getUint32(12, true);
  const bodyLength = readU64Number(buf, dv, 16, path, 'body length');
  const recordCount = readU64Number(buf, dv, 24, path, 'record count');
  const expected = CHECKPOINT_HEADER_SIZE + metaLength + bodyLength;
  if (expected !== fileLen) {
    throw invalid(path, 12, `header says ${expected} bytes (meta ${metaLength}, body ${bodyLength}), the file has ${fileLen}`);
  }
  // The smallest record is 5 bytes: a larger count is a lie, refuse it before any loop trusts it.
  if (recordCount > bodyLength / 5) throw invalid(path, 24, `${recordCount} records cannot fit in ${bodyLength} bytes`);
  return { flags, metaLength, bodyLength, recordCount, bodyCrc: dv.getUint32(32, true), headerCrc: dv.getUint32(36, true) };
}

/**
 * Checks the header CRC and decodes the meta section at `buf[start, start + h.metaLength)`.
 * Allocation is bounded by the meta section's own size.
 */
export function decodeMeta(buf: Uint8Array, start: number, h: CheckpointHeader, headerBytes: Uint8Array, path: string, fileLen: number): CheckpointMetadata {
  const end = start + h.metaLength;
  assert(end <= buf.length, 'meta section loaded');
  const crc = crc32c(buf, start, end, crc32c(headerBytes, 0, 36));
  if (crc !== h.headerCrc) {
    throw invalid(path, 36, `header checksum mismatch: stored 0x${h.headerCrc.toString(16)}, computed 0x${crc.toString(16)}`);
  }
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const off = (p: number): number => CHECKPOINT_HEADER_SIZE + (p - start);
  const need = (p: number, n: number, what: string): void => {
    if (end - p < n) throw invalid(path, off(p), `meta section ends inside ${what}`);
  };
  let p = start;
  need(p, 52, 'the fixed fields');
  const id = dv.getBigUint64(p, true);
  const epoch = dv.getBigUint64(p + 8, true);
  const parent = dv.getBigUint64(p + 16, true);
  const timestamp = dv.getBigUint64(p + 24, true);
  const keyCount = readU64Number(buf, dv, p + 32, path, 'key count');
  const wm = dv.getBigInt64(p + 40, true);
  const numCores = dv.getUint32(p + 48, true);
  p += 52;
  const incremental = (h.flags & FLAG_INCREMENTAL) !== 0;
  if (!incremental && parent !== 0n) throw invalid(path, off(start + 16), 'a full checkpoint names a parent');
  if (incremental && parent >= id) throw invalid(path, off(start + 16), `parent ${parent} is not older than checkpoint ${id}`);
  if ((h.flags & FLAG_WATERMARK) === 0 && wm !== 0n) throw invalid(path, off(start + 40), 'watermark value without the watermark flag');
  if (numCores > 65536) throw invalid(path, off(start + 48), `${numCores} cores`);
  need(p, numCores * PER_CORE + 4, 'the WAL positions');
  const walPositions = new Array<number>(numCores);
  const nextSequences = new Array<bigint>(numCores);
  const barrierCrcs = new Array<number>(numCores);
  for (let c = 0; c < numCores; c++) {
    walPositions[c] = readU64Number(buf, dv, p, path, `WAL position of core ${c}`);
    nextSequences[c] = dv.getBigUint64(p + 8, true);
    barrierCrcs[c] = dv.getUint32(p + 16, true);
    p += PER_CORE;
  }
  const sources = dv.getUint32(p, true);
  p += 4;
  const sourceOffsets = new Map<string, bigint>();
  for (let i = 0; i < sources; i++) {
    need(p, 2, 'a source name length');
    const n = dv.getUint16(p, true);
    need(p + 2, n + 8, 'a source name and offset');
    let name: string;
    try {
      name = utf8.decode(buf.subarray(p + 2, p + 2 + n));
    } catch {
      throw invalid(path, off(p), 'source name is not UTF-8');
    }
    if (sourceOffsets.has(name)) throw invalid(path, off(p), `source ${JSON.stringify(name)} named twice`);
    sourceOffsets.set(name, dv.getBigInt64(p + 2 + n, true));
    p += 10 + n;
  }
  if (p !== end) throw invalid(path, off(p), `${end - p} bytes after the last meta field`);
  return {
    id, epoch, timestamp, walPositions, nextSequences, barrierCrcs, sourceOffsets,
    watermark: (h.flags & FLAG_WATERMARK) !== 0 ? wm : null,
    sizeBytes: fileLen, keyCount, changeCount: h.recordCount, isIncremental: incremental,
    parentId: incremental ? parent : null, checksum: h.bodyCrc, path,
  };
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Receives decoded records; keys are map keys (one latin1 character per byte). */
export interface RecordSink {
  put(key: string, value: Uint8Array): void;
  delete(key: string): void;
}

/**
 * Checks the body CRC and decodes `count` records from `buf[start, end)` into `sink`.
 * Values are views into `buf` (a loaded checkpoint is mostly live values: one allocation
 * for the file beats one per value, about a third of the load time for small values);
 * every length is checked against the bytes left before anything is allocated for it.
 */
export function decodeBody(buf: Buffer, start: number, end: number, h: CheckpointHeader, path: string, sink: RecordSink, allowDeletes: boolean): void {
  const crc = crc32c(buf, start, end);
  if (crc !== h.bodyCrc) {
    throw invalid(path, start, `body checksum mismatch: stored 0x${h.bodyCrc.toString(16)}, computed 0x${crc.toString(16)}`);
  }
  let p = start;
  const pos = (q: number): number => CHECKPOINT_HEADER_SIZE + h.metaLength + (q - start);
  for (let i = 0; i < h.recordCount; i++) {
    if (end - p < 5) throw invalid(path, pos(p), `record ${i} header truncated`);
    const kind = buf[p]!;
    const klen = buf.readUInt32LE(p + 1);
    p += 5;
    if (klen > end - p) throw invalid(path, pos(p), `record ${i}: key of ${klen} bytes exceeds the body`);
    const key = buf.toString('latin1', p, p + klen);
    p += klen;
    if (kind === REC_PUT) {
      if (end - p < 4) throw invalid(path, pos(p), `record ${i}: value length truncated`);
      const vlen = buf.readUInt32LE(p);
      p += 4;
      if (vlen > end - p) throw invalid(path, pos(p), `record ${i}: value of ${vlen} bytes exceeds the body`);
      sink.put(key, buf.subarray(p, p + vlen));
      p += vlen;
    } else if (kind === REC_DELETE && allowDeletes) {
      sink.delete(key);
    } else {
      throw invalid(path, pos(p - 5 - klen), `record ${i}: ${kind === REC_DELETE ? 'delete in a full checkpoint' : `unknown record kind ${kind}`}`);
    }
  }
  if (p !== end) throw invalid(path, pos(p), `${end - p} bytes after the last record`);
}
