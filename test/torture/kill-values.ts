/** The key the kill child writes for a core and sequence. */
export function killKey(coreId: number, seq: bigint): Buffer {
  return Buffer.from(`c${coreId}-k${seq}`);
}

/** The value the kill child writes for a sequence, so the parent can check every byte. */
export function killValue(seq: bigint): Buffer {
  const n = Number(seq % 997n);
  const len = (n * 37) % 700;
  const out = Buffer.allocUnsafe(len);
  let x = (n * 2654435761) >>> 0 || 1;
  for (let i = 0; i < len; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}
