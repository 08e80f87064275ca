/** The two systems every row is quoted against. */
export const LMDB = 'lmdb-js';
export const FS_LOOP = 'fs loop';
