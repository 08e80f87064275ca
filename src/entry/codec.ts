import { PerCoreWalError } from '../errors/errors.js';
import {
  copyBytes, PAYLOAD_HEADER_SIZE, PerCoreWalEntry, putOperation, TAG_CHECKPOINT, TAG_COMMIT, TAG_DELETE, TAG_EPOCH_BARRIER, TAG_PUT, type WalOperation,
} from './entry.js';

export { PAYLOAD_HEADER_SIZE, TAG_CHECKPOINT, TAG_COMMIT, TAG_DELETE, TAG_EPOCH_BARRIER, TAG_PUT };

/**
 * Payload codec, format version 1 (docs/FORMAT.md is the byte-by-byte reference).
 *
 * ```
 * 0  u8   version (1)
 * 1  u8   tag: 1 put, 2 delete, 3 checkpoint, 4 commit, 5 epochBarrier
 * 2  u16  coreId
 * 4  u64  epoch
 * 12 u64  sequence
 * 20 u64  timestampNs
 * 28 u64  syncedBoundary: bytes of the segment durable when the record was appended
 * 36      body (per tag)
 * ```
 */
export const FORMAT_VERSION = 1;

const TAG_OF: Record<WalOperation['type'], number> = {
  put: TAG_PUT, delete: TAG_DELETE, checkpoint: TAG_CHECKPOINT, commit: TAG_COMMIT, epochBarrier: TAG_EPOCH_BARRIER,
};

// ignoreBOM: a source name that starts with U+FEFF must keep it (the default strips it,
// so the decoded name would differ from the one written).
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Writes the fixed 36-byte payload header at `off`. Hot path: plain numbers only. */
export function writePayloadHeader(
  dv: DataView, off: number, tag: number, coreId: number,
  eHi: number, eLo: number, sHi: number, sLo: number, tHi: number, tLo: number, syncedBoundary: number,
): void {
  dv.setUint8(off, FORMAT_VERSION);
  dv.setUint8(off + 1, tag);
  dv.setUint16(off + 2, coreId, true);
  dv.setUint32(off + 4, eLo, true);
  dv.setUint32(off + 8, eHi, true);
  dv.setUint32(off + 12, sLo, true);
  dv.setUint32(off + 16, sHi, true);
  dv.setUint32(off + 20, tLo, true);
  dv.setUint32(off + 24, tHi, true);
  const bHi = Math.floor(syncedBoundary / 4294967296);
  dv.setUint32(off + 28, syncedBoundary - bHi * 4294967296, true);
  dv.setUint32(off + 32, bHi, true);
}

/** Bytes the body of `op` takes. */
export function bodySize(op: WalOperation): number {
  switch (op.type) {
    case 'put': return 4 + op.key.length + op.value.length;
    case 'delete': return op.key.length;
    case 'checkpoint': return 8;
    case 'epochBarrier': return 8;
    case 'commit': {
      let n = 1 + 8 + 2;
      for (const name of op.offsets.keys()) n += 2 + Buffer.byteLength(name) + 8;
      return n;
    }
  }
}

export function payloadSize(entry: PerCoreWalEntry): number {
  return PAYLOAD_HEADER_SIZE + bodySize(entry.operation);
}

/**
 * Encodes `entry`'s payload into `buf` at `off` (the caller has checked the room).
 * Returns the payload length. `syncedBoundary` overrides the entry's own.
 */
export function encodePayload(entry: PerCoreWalEntry, buf: Uint8Array, dv: DataView, off: number, syncedBoundary = entry.syncedBoundary): number {
  const op = entry.operation;
  writePayloadHeader(dv, off, TAG_OF[op.type], entry.coreId, entry.eHi, entry.eLo, entry.sHi, entry.sLo, entry.tHi, entry.tLo, syncedBoundary);
  let p = off + PAYLOAD_HEADER_SIZE;
  switch (op.type) {
    case 'put':
      dv.setUint32(p, op.key.length, true);
      buf.set(op.key, p + 4);
      buf.set(op.value, p + 4 + op.key.length);
      p += 4 + op.key.length + op.value.length;
      break;
    case 'delete':
      buf.set(op.key, p);
      p += op.key.length;
      break;
    case 'checkpoint':
      dv.setBigUint64(p, op.id, true);
      p += 8;
      break;
    case 'epochBarrier':
      dv.setBigUint64(p, op.epoch, true);
      p += 8;
      break;
    case 'commit': {
      dv.setUint8(p, op.watermark === null ? 0 : 1);
      dv.setBigInt64(p + 1, op.watermark ?? 0n, true);
      dv.setUint16(p + 9, op.offsets.size, true);
      p += 11;
      for (const [name, value] of op.offsets) {
        const n = Buffer.from(name, 'utf8');
        dv.setUint16(p, n.length, true);
        buf.set(n, p + 2);
        dv.setBigInt64(p + 2 + n.length, value, true);
        p += 2 + n.length + 8;
      }
      break;
    }
  }
  return p - off;
}

function bad(reason: string, path?: string, position?: number): PerCoreWalError {
  const where = path !== undefined ? ` in ${path}${position !== undefined ? ` at byte ${position}` : ''}` : '';
  return new PerCoreWalError('DECODE', `undecodable payload${where}: ${reason}`, { path, position });
}

/**
 * Decodes a payload occupying `buf[start, end)`. Any byte string yields an entry or a
 * `DECODE` error; nothing is allocated beyond the payload's own size.
 *
 * Every field is checked here. A Put's or Delete's key and value are copied out of `buf`
 * — unless `shared` says that nothing will ever write to `buf` again: then the entry
 * refers to `buf` and copies them the first time they are asked for (a read block that
 * the reader hands over instead of reusing; see {@link PerCoreWalEntry}).
 */
export function decodePayload(
  buf: Uint8Array, dv: DataView, start: number, end: number, path?: string, position?: number, shared = false,
): PerCoreWalEntry {
  const len = end - start;
  if (len < PAYLOAD_HEADER_SIZE) throw bad(`payload of ${len} bytes is shorter than the ${PAYLOAD_HEADER_SIZE}-byte header`, path, position);
  const version = buf[start]!;
  if (version !== FORMAT_VERSION) throw bad(`unknown format version ${version}`, path, position);
  const tag = buf[start + 1]!;
  const coreId = dv.getUint16(start + 2, true);
  const eLo = dv.getUint32(start + 4, true), eHi = dv.getUint32(start + 8, true);
  const sLo = dv.getUint32(start + 12, true), sHi = dv.getUint32(start + 16, true);
  const tLo = dv.getUint32(start + 20, true), tHi = dv.getUint32(start + 24, true);
  const bLo = dv.getUint32(start + 28, true), bHi = dv.getUint32(start + 32, true);
  if (bHi >= 0x200000) throw bad('synced boundary beyond 2^53', path, position);
  const boundary = bHi * 4294967296 + bLo;
  const b = start + PAYLOAD_HEADER_SIZE;
  let op: WalOperation;
  switch (tag) {
    case TAG_PUT: {
      if (end - b < 4) throw bad('put body shorter than its key length field', path, position);
      const klen = dv.getUint32(b, true);
      if (klen > end - b - 4) throw bad(`put key length ${klen} exceeds the payload`, path, position);
      if (shared) return new PerCoreWalEntry(coreId, eHi, eLo, sHi, sLo, tHi, tLo, null, boundary, buf, start, end);
      op = putOperation(buf, b + 4, b + 4 + klen, end);
      break;
    }
    case TAG_DELETE:
      if (shared) return new PerCoreWalEntry(coreId, eHi, eLo, sHi, sLo, tHi, tLo, null, boundary, buf, start, end);
      op = { type: 'delete', key: copyBytes(buf, b, end) };
      break;
    case TAG_CHECKPOINT:
    case TAG_EPOCH_BARRIER: {
      if (end - b !== 8) throw bad(`${tag === TAG_CHECKPOINT ? 'checkpoint' : 'epoch barrier'} body must be 8 bytes, is ${end - b}`, path, position);
      const v = dv.getBigUint64(b, true);
      op = tag === TAG_CHECKPOINT ? { type: 'checkpoint', id: v } : { type: 'epochBarrier', epoch: v };
      break;
    }
    case TAG_COMMIT: {
      if (end - b < 11) throw bad('commit body shorter than 11 bytes', path, position);
      const flags = buf[b]!;
      if (flags > 1) throw bad(`commit flags ${flags} unknown`, path, position);
      const wm = dv.getBigInt64(b + 1, true);
      if (flags === 0 && wm !== 0n) throw bad('commit without watermark carries a watermark value', path, position);
      const count = dv.getUint16(b + 9, true);
      const offsets = new Map<string, bigint>();
      let p = b + 11;
      for (let i = 0; i < count; i++) {
        if (end - p < 2) throw bad('commit source truncated', path, position);
        const nlen = dv.getUint16(p, true);
        if (end - p - 2 < nlen + 8) throw bad('commit source name or offset truncated', path, position);
        let name: string;
        try {
          name = utf8.decode(buf.subarray(p + 2, p + 2 + nlen));
        } catch {
          throw bad('commit source name is not UTF-8', path, position);
        }
        if (offsets.has(name)) throw bad(`commit names source ${JSON.stringify(name)} twice`, path, position);
        offsets.set(name, dv.getBigInt64(p + 2 + nlen, true));
        p += 2 + nlen + 8;
      }
      if (p !== end) throw bad(`commit body has ${end - p} trailing bytes`, path, position);
      op = { type: 'commit', offsets, watermark: flags === 1 ? wm : null };
      break;
    }
    default:
      throw bad(`unknown operation tag ${tag}`, path, position);
  }
  return new PerCoreWalEntry(coreId, eHi, eLo, sHi, sLo, tHi, tLo, op, boundary);
}

/** Convenience for cold paths and tests: the payload bytes of `entry`. */
export function encodePayloadToBuffer(entry: PerCoreWalEntry, syncedBoundary = entry.syncedBoundary): Buffer {
  const buf = Buffer.allocUnsafe(payloadSize(entry));
  encodePayload(entry, buf, new DataView(buf.buffer, buf.byteOffset, buf.byteLength), 0, syncedBoundary);
  return buf;
}

/** Convenience for cold paths and tests: decode a whole payload buffer. */
export function decodePayloadBuffer(buf: Uint8Array): PerCoreWalEntry {
  return decodePayload(buf, new DataView(buf.buffer, buf.byteOffset, buf.byteLength), 0, buf.length);
}

