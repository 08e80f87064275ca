// Regenerates test/golden/segment-v1.{bin,json}. Run only when the format version changes:
// the point of golden vectors is that they do not change with the code.
import { mkdtempSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreWalWriter, PerCoreWalReader } from '../dist/src/index.js';

const dir = mkdtempSync(join(tmpdir(), 'golden-'));
const path = join(dir, 'wal-7.log');
let t = 1_700_000_000_000_000_000n;
const w = CoreWalWriter.create(7, path, { clock: () => (t += 1000n), preallocate: 0, epoch: 3 });
w.appendPut(Buffer.from('user:1'), Buffer.from('{"name":"Ada"}'));
w.appendPut(Buffer.alloc(0), Buffer.alloc(0));
w.appendPut(Buffer.from([0, 255, 128]), Buffer.from('binary'));
w.sync();
w.appendDelete(Buffer.from('user:1'));
w.appendCheckpoint((1n << 64n) - 1n);
w.setEpoch(4);
w.appendEpochBarrier();
w.appendCommit(new Map([['orders-0', 42n], ['ünïcode', -(1n << 63n)]]), 1_700_000_000_000n);
w.appendCommit({}, null);
w.sync();
w.close();
const bytes = readFileSync(path);
const hex = (u) => Buffer.from(u).toString('hex');
const entries = PerCoreWalReader.open(7, path).readAll().map((e) => ({
  coreId: e.coreId, epoch: String(e.epoch), sequence: String(e.sequence), timestampNs: String(e.timestampNs),
  syncedBoundary: e.syncedBoundary,
  operation: e.operation.type === 'put' ? { type: 'put', key: hex(e.operation.key), value: hex(e.operation.value) }
    : e.operation.type === 'delete' ? { type: 'delete', key: hex(e.operation.key) }
    : e.operation.type === 'checkpoint' ? { type: 'checkpoint', id: String(e.operation.id) }
    : e.operation.type === 'epochBarrier' ? { type: 'epochBarrier', epoch: String(e.operation.epoch) }
    : { type: 'commit', offsets: [...e.operation.offsets].map(([k, v]) => [k, String(v)]), watermark: e.operation.watermark === null ? null : String(e.operation.watermark) },
}));
writeFileSync(new URL('../test/golden/segment-v1.bin', import.meta.url), bytes);
writeFileSync(new URL('../test/golden/segment-v1.json', import.meta.url), JSON.stringify({ coreId: 7, formatVersion: 1, entries }, null, 2) + '\n');
rmSync(dir, { recursive: true });
console.log(`wrote ${bytes.length} bytes, ${entries.length} entries`);
