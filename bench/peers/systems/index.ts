import type { PeerSystem } from '../types.js';
import { corewal, corewalMerge } from './corewal.js';
import { corewalPool } from './corewal-pool.js';
import { fsLoop } from './fs-loop.js';
import { level } from './level.js';
import { lmdb, lmdbCommitOnly } from './lmdb.js';
import { sqlite } from './sqlite.js';

/** Every system of the comparison, in table order (lmdb-js and the fs loop are the ratio baselines). */
export const systems: readonly PeerSystem[] = [corewal, corewalPool, corewalMerge, level, sqlite, lmdb, fsLoop, lmdbCommitOnly];
