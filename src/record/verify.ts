import { crc32cWithView } from '../crc/crc32c.js';
import { assert } from '../util/assert.js';
import { nativeAddon, type NativeBinding } from '../util/native.js';
import { RECORD_HEADER_SIZE } from './framing.js';

/**
 * Batch verification: the reader's counterpart of sealing (seal.ts). Checking a run of
 * frames read from disk in one call into the native addon (native/frames.c, the CPU's
 * CRC-32C instruction) costs a fraction of a table CRC per record in JavaScript, which is
 * most of a reader's work at record sizes. The bytes are untrusted, so the call never
 * throws on them: it says how far they are good, and the caller classifies the rest
 * record by record, as it would without it.
 */

type Verifier = NativeBinding & { verifyFrames: NonNullable<NativeBinding['verifyFrames']> };

/**
 * The TypeScript form of {@link verifyFrames}: the contract that the native one is checked
 * against at load and in the tests.
 */
export function verifyFramesJs(buf: Uint8Array, dv: DataView, from: number, to: number, maxRecord: number): number {
  let at = from;
  while (to - at >= RECORD_HEADER_SIZE) {
    const plen = dv.getUint32(at, true);
    if (plen === 0 || plen > maxRecord || plen > to - at - RECORD_HEADER_SIZE) break;
    const start = at + RECORD_HEADER_SIZE;
    if (crc32cWithView(dv, buf, start, start + plen) !== dv.getUint32(at + 4, true)) break;
    at = start + plen;
  }
  return at;
}

/** Frames for the self-check: good ones, then one of every way a frame can be bad. */
function probe(): { buf: Buffer; dv: DataView; cuts: number[] } {
  const lens = [61, 1, 8, 300, 2000, 9, 40];
  const buf = Buffer.alloc(lens.reduce((a, l) => a + RECORD_HEADER_SIZE + l, 0));
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const cuts = [0];
  let at = 0;
  for (let i = 0; i < lens.length; i++) {
    const l = lens[i]!;
    for (let j = 0; j < l; j++) buf[at + RECORD_HEADER_SIZE + j] = (i * 131 + j * 7) & 0xff;
    dv.setUint32(at, l, true);
    dv.setUint32(at + 4, crc32cWithView(dv, buf, at + RECORD_HEADER_SIZE, at + RECORD_HEADER_SIZE + l), true);
    at += RECORD_HEADER_SIZE + l;
    cuts.push(at);
  }
  return { buf, dv, cuts };
}

/** The native verifier if it loads and agrees with {@link verifyFramesJs} on the probe. */
function load(): { fn: Verifier | null; reason: string | null } {
  const { binding: b, reason } = nativeAddon();
  if (b === null) return { fn: null, reason };
  // An addon built before verifyFrames existed (COREWAL_FRAMES_ADDON may name any build).
  if (typeof b.verifyFrames !== 'function') return { fn: null, reason: 'the native addon has no verifyFrames (an older build)' };
  if (b.crc32c(Buffer.from('123456789'), 0, 9) !== 0xe3069283) return { fn: null, reason: 'the native addon computes a wrong CRC-32C' };
  const v = b as Verifier;
  const { buf, dv, cuts } = probe();
  const end = buf.length;
  const agree = (from: number, to: number, max: number): boolean =>
    v.verifyFrames(buf, from, to, max) === verifyFramesJs(buf, dv, from, to, max);
  let ok = agree(0, end, 1 << 20) && agree(cuts[2]!, end - 1, 1 << 20) && agree(0, end, 1000) && agree(0, cuts[3]! + 3, 1 << 20);
  // A bad CRC, then a zero length, in the middle of the run.
  buf[cuts[4]! + RECORD_HEADER_SIZE + 5]! ^= 0x10;
  ok &&= agree(0, end, 1 << 20) && v.verifyFrames(buf, 0, end, 1 << 20) === cuts[4];
  dv.setUint32(cuts[1]!, 0, true);
  ok &&= agree(0, end, 1 << 20);
  if (!ok) return { fn: null, reason: 'the native addon verifies frames wrongly' };
  return { fn: v, reason: null };
}

const loaded = load();
const native = loaded.fn;

/** Whether frames are verified natively here, and why not if not. */
export const verifyBackend: { native: boolean; reason: string | null } = { native: native !== null, reason: loaded.reason };

/**
 * Checks the frames `[length u32][crc32c u32][payload]` of `buf[from, to)` from `from` on
 * and returns the offset just past the last one of the longest run that is good: each
 * frame wholly before `to`, its length in [1, `maxRecord`], its CRC-32C right. Returns
 * `from` when the first frame is not. Never throws on the bytes; `dv` must view `buf`.
 * Native where the addon loaded, else {@link verifyFramesJs}: the same result either way.
 */
export function verifyFrames(buf: Uint8Array, dv: DataView, from: number, to: number, maxRecord: number): number {
  return native !== null ? native.verifyFrames(buf, from, to, maxRecord) : verifyFramesJs(buf, dv, from, to, maxRecord);
}

/**
 * Bytes of records checked per batch beyond the one being read: ~400 records of 164 bytes
 * a call, so the call's own cost vanishes, while a reader that stops after a few records
 * (a short replay from a checkpoint) never pays for a whole 1 MiB block.
 */
export const VERIFY_SPAN = 64 << 10;

/**
 * The run of frames the last batch found good in a reader's block, as block offsets: the
 * frame at `at` and each one its lengths lead to, up to `end`, has a right CRC. Only frames
 * reached by following lengths from `at` are covered, so a frame is trusted only when it
 * stands exactly at `at`; the owner moves `at` past each frame it accepts and calls
 * {@link VerifiedRun.clear} whenever the block's bytes or its file position change.
 * Shared by PerCoreWalReader and recovery's SegmentCursor.
 */
export class VerifiedRun {
  at = -1;
  end = -1;
  /** False: every record gets its own CRC, as before batches (tests compare the two). */
  private readonly enabled: boolean;

  constructor(enabled: boolean) { this.enabled = enabled; }

  clear(): void { this.at = this.end = -1; }

  /** The frame at `off`, ending at `next`, was accepted: the run, if it stood there, moves past it. */
  passed(off: number, next: number): void {
    if (off === this.at) this.at = next;
  }

  /**
   * True when the CRC of the frame `block[off, end)` is right (its length already checked:
   * non-zero, at most the maximum, wholly within `blockLen`). At the head of the run it is
   * known good; elsewhere one batch checks it and the run after it. A frame no batch vouches
   * for gets its own CRC, so that what a fast path accepts never depends on batches.
   */
  checked(block: Buffer, dv: DataView, blockLen: number, off: number, end: number, maxRecord: number): boolean {
    if (this.enabled) {
      if (off === this.at && off < this.end) return true;
      const to = Math.min(blockLen, end + VERIFY_SPAN);
      const good = verifyFrames(block, dv, off, to, maxRecord);
      assert(good === off || (good >= end && good <= to), 'a verified run ends on a frame boundary within its range');
      this.at = off;
      this.end = good;
      if (good > off) return true;
    }
    return crc32cWithView(dv, block, off + RECORD_HEADER_SIZE, end) === dv.getUint32(off + 4, true);
  }
}
