/**
 * The core a key belongs to: FNV-1a (32-bit) of its bytes, modulo the number of cores.
 * Stable across processes and versions, so a key always lands in the same segment of a
 * WAL with the same number of cores.
 */
export function coreForKey(key: Uint8Array, numCores: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key[i]!;
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) % numCores;
}
