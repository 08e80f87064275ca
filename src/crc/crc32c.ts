import { createRequire } from 'node:module';

/**
 * CRC-32C (Castagnoli), as framed records carry it. Two implementations:
 * a slicing-by-8 table in TypeScript, and @node-rs/crc32's SIMD binding.
 * The binding costs ~150 ns per call, so short inputs go to the table and long
 * ones to SIMD; {@link crc32c} picks by length. If the binding cannot load
 * (platform without a prebuilt), everything uses the table.
 */

const POLY = 0x82f63b78;
const T = new Int32Array(8 * 256);
for (let i = 0; i < 256; i++) {
  let c = i;
  for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
  T[i] = c;
}
for (let i = 0; i < 256; i++) {
  for (let t = 1; t < 8; t++) T[t * 256 + i] = (T[(t - 1) * 256 + i]! >>> 8) ^ T[T[(t - 1) * 256 + i]! & 0xff]!;
}

/** Pure-TypeScript CRC-32C of `buf[start, end)`, continuing from `crc` (0 for a fresh CRC). */
export function crc32cJs(buf: Uint8Array, start = 0, end = buf.length, crc = 0): number {
  let c = ~crc;
  let i = start;
  const t = T;
  const end8 = end - 8;
  while (i <= end8) {
    const a = c ^ (buf[i]! | (buf[i + 1]! << 8) | (buf[i + 2]! << 16) | (buf[i + 3]! << 24));
    c =
      t[1792 + (a & 0xff)]! ^ t[1536 + ((a >>> 8) & 0xff)]! ^ t[1280 + ((a >>> 16) & 0xff)]! ^ t[1024 + (a >>> 24)]! ^
      t[768 + buf[i + 4]!]! ^ t[512 + buf[i + 5]!]! ^ t[256 + buf[i + 6]!]! ^ t[buf[i + 7]!]!;
    i += 8;
  }
  while (i < end) c = t[(c ^ buf[i++]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

/**
 * The same table CRC reading 32-bit words through a DataView over `buf`: fewer loads and
 * shifts than byte-at-a-time, ~15% faster on record-sized inputs. `dv` must view `buf`.
 */
export function crc32cJsDv(dv: DataView, buf: Uint8Array, start: number, end: number, crc = 0): number {
  let c = ~crc;
  let i = start;
  const t = T;
  const end8 = end - 8;
  while (i <= end8) {
    const a = c ^ dv.getInt32(i, true);
    const b = dv.getInt32(i + 4, true);
    c =
      t[1792 + (a & 0xff)]! ^ t[1536 + ((a >>> 8) & 0xff)]! ^ t[1280 + ((a >>> 16) & 0xff)]! ^ t[1024 + (a >>> 24)]! ^
      t[768 + (b & 0xff)]! ^ t[512 + ((b >>> 8) & 0xff)]! ^ t[256 + ((b >>> 16) & 0xff)]! ^ t[b >>> 24]!;
    i += 8;
  }
  while (i < end) c = t[(c ^ buf[i++]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

type NativeCrc = (input: Buffer, initial?: number) => number;
let native: NativeCrc | null = null;
let nativeLoadError: string | null = null;
if (process.env['COREWAL_NO_NATIVE_CRC'] !== '1') {
  try {
    const req = createRequire(import.meta.url);
    const mod = req('@node-rs/crc32') as { crc32c: NativeCrc };
    if (typeof mod.crc32c === 'function' && mod.crc32c(Buffer.from('123456789')) === 0xe3069283) native = mod.crc32c;
    else nativeLoadError = 'native crc32c gave a wrong check value';
  } catch (e) {
    nativeLoadError = (e as Error).message;
  }
} else {
  nativeLoadError = 'disabled by COREWAL_NO_NATIVE_CRC=1';
}

/** Which CRC-32C implementation handles long inputs, and why the native one is off if it is. */
export const crc32cBackend: { native: boolean; reason: string | null } = { native: native !== null, reason: nativeLoadError };

/** Native SIMD CRC-32C of `buf[start, end)`; throws if the binding did not load. */
export function crc32cNative(buf: Uint8Array, start = 0, end = buf.length, crc = 0): number {
  if (native === null) throw new Error(`native crc32c unavailable: ${nativeLoadError}`);
  const view = Buffer.from(buf.buffer, buf.byteOffset + start, end - start);
  return native(view, crc) >>> 0;
}

/** Below this many bytes the table beats the binding's call overhead (measured: 87 ns vs 147 ns at 100 B). */
export const NATIVE_THRESHOLD = 512;

/** CRC-32C of `buf[start, end)` where `dv` views `buf`; picks the faster implementation by length. */
export function crc32cWithView(dv: DataView, buf: Uint8Array, start: number, end: number): number {
  if (native !== null && end - start >= NATIVE_THRESHOLD) {
    return native(Buffer.from(buf.buffer, buf.byteOffset + start, end - start), 0) >>> 0;
  }
  return crc32cJsDv(dv, buf, start, end);
}

/** CRC-32C of `buf[start, end)`, continuing from `crc`; picks the faster implementation by length. */
export function crc32c(buf: Uint8Array, start = 0, end = buf.length, crc = 0): number {
  if (native !== null && end - start >= NATIVE_THRESHOLD) {
    return native(Buffer.from(buf.buffer, buf.byteOffset + start, end - start), crc) >>> 0;
  }
  return crc32cJs(buf, start, end, crc);
}
