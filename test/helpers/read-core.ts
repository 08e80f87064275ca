import { PerCoreWalReader, type PerCoreWalEntry } from '../../src/index.js';

/** Every entry of core `core`'s segment at `path`, in order; the reader is closed afterwards. */
export function readCore(path: string, core: number): PerCoreWalEntry[] {
  const r = PerCoreWalReader.open(core, path);
  try {
    return r.readAll();
  } finally {
    r.close();
  }
}
