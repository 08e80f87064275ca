import assert from 'node:assert/strict';
import { fork } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { CoreWalPool, recoverPerCore, scanSegment } from '../src/index.js';
import { replayStarts } from '../src/checkpoint/resume.js';
import { realFs } from '../src/io/fs.js';
import { ingestValue, type IngestReport } from '../src/worker/ingest-child.js';
import { tempDir } from './helpers/tmp.js';

const CHILD = fileURLToPath(new URL('../src/worker/ingest-child.js', import.meta.url));

/** Runs the ingest child until it has reported `minCheckpoints` checkpoints and `minAcked` keys, then SIGKILLs it. */
async function ingestThenKill(args: string[], minCheckpoints: number, minAcked: number): Promise<{ acked: string[]; checkpoints: number }> {
  const child = fork(CHILD, args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const acked: string[] = [];
  let checkpoints = 0;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`ingest child too slow: ${checkpoints} checkpoints, ${acked.length} acked`)); }, 30_000);
    child.on('message', (m: IngestReport) => {
      if (m.type === 'acked') for (const k of m.keys) acked.push(k);
      if (m.type === 'checkpoint') checkpoints++;
      if (m.type === 'error') { clearTimeout(timer); reject(new Error(`${m.code}: ${m.message}`)); }
      if (checkpoints >= minCheckpoints && acked.length >= minAcked && child.exitCode === null && !child.killed) {
        clearTimeout(timer);
        // SIGKILL mid-stream: no chance to drain, sync, close or finish a checkpoint.
        child.kill('SIGKILL');
        resolve();
      }
    });
    child.once('exit', (code, signal) => { if (signal !== 'SIGKILL') { clearTimeout(timer); reject(new Error(`ingest child exited early: ${code}`)); } });
  });
  await new Promise((r) => (child.exitCode !== null || child.signalCode !== null ? r(null) : child.once('exit', r)));
  return { acked, checkpoints };
}

test('SIGKILL of a pool process mid-ingest with checkpoints: recovery holds every acknowledged record', { timeout: 90_000 }, async () => {
  const root = tempDir();
  const walDir = join(root, 'wal');
  const cpDir = join(root, 'cp');
  const common = ['--dir', walDir, '--checkpoint-dir', cpDir, '--workers', '2', '--checkpoint-ms', '150', '--value-bytes', '64'];
  const first = await ingestThenKill([...common, '--prefix', 'a'], 2, 2000);
  // Segments end in valid records, perhaps a torn tail: never damage.
  for (let c = 0; c < 2; c++) {
    const s = scanSegment(c, join(walDir, `wal-${c}.log`));
    assert.ok(s.tail !== 'damaged', `core ${c} tail ${s.tail}`);
  }
  const check = (keys: string[]) => {
    const rec = recoverPerCore(walDir, cpDir, 2);
    assert.ok(rec.checkpointId !== null && rec.checkpointId >= 1n, 'a checkpoint was taken before the kill');
    for (const k of keys) {
      const v = rec.state.get(k);
      assert.ok(v !== undefined, `acknowledged ${k} survived the SIGKILL`);
      assert.ok(ingestValue(k, 64).equals(Buffer.from(v)), `${k} has its value`);
    }
    return rec;
  };
  check(first.acked);
  // A second run on the same directory starts the pool over the torn tails and goes on.
  const second = await ingestThenKill([...common, '--prefix', 'b'], 1, 1000);
  const rec = check([...first.acked, ...second.acked]);
  assert.ok(rec.state.size >= first.acked.length + second.acked.length);
  // And the pool opens it cleanly once more.
  const pool = await CoreWalPool.start({ dir: walDir, workers: 2 });
  await pool.close();
});

/**
 * Runs the ingest child with `--kill-at step`: it SIGKILLs itself at that step of its
 * first checkpoint, having sent every acknowledgement up to then.
 */
async function ingestUntilSelfKill(args: string[]): Promise<{ acked: string[]; ackedDuring: number }> {
  const child = fork(CHILD, args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const acked: string[] = [];
  let ackedDuring = -1;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`ingest child did not kill itself: ${acked.length} acked`)); }, 30_000);
    child.on('message', (m: IngestReport) => {
      if (m.type === 'acked') for (const k of m.keys) acked.push(k);
      if (m.type === 'killing') ackedDuring = m.ackedDuring;
      if (m.type === 'error') { clearTimeout(timer); reject(new Error(`${m.code}: ${m.message}`)); }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      if (signal === 'SIGKILL' && ackedDuring >= 0) resolve(); else reject(new Error(`ingest child exited with ${code ?? signal} before its kill step`));
    });
  });
  return { acked, ackedDuring };
}

test('SIGKILL at each step of a pool checkpoint: what was acknowledged during it survives; the segment is whole or compacted', { timeout: 90_000 }, async () => {
  for (const step of ['barriers', 'durable', 'compacted'] as const) {
    const root = tempDir();
    const walDir = join(root, 'wal');
    const cpDir = join(root, 'cp');
    // 400 ms of ingest before the checkpoint: its merge takes several slices of the event loop.
    const run = await ingestUntilSelfKill(['--dir', walDir, '--checkpoint-dir', cpDir, '--workers', '2', '--checkpoint-ms', '400',
      '--value-bytes', '64', '--kill-at', step]);
    if (step !== 'barriers') assert.ok(run.ackedDuring > 0, `${step}: puts were acknowledged while the checkpoint ran (${run.ackedDuring})`);
    const rec = recoverPerCore(walDir, cpDir, 2);
    for (const k of run.acked) {
      const v = rec.state.get(k);
      assert.ok(v !== undefined, `${step}: acknowledged ${k} survived the SIGKILL`);
      assert.ok(ingestValue(k, 64).equals(Buffer.from(v)), `${step}: ${k} has its value`);
    }
    const cfg = { path: (c: number) => join(walDir, `wal-${c}.log`) };
    if (step === 'barriers') {
      assert.equal(rec.checkpointId, null, 'killed before the checkpoint was written');
    } else {
      assert.equal(rec.checkpointId, 1n);
      const starts = replayStarts(rec.checkpoint, 2, cfg.path, realFs);
      // Before the compaction recovery skips the checkpoint's part of each segment; after it the
      // segment holds only what came after the barrier, and is replayed whole.
      assert.deepEqual(starts, step === 'durable' ? rec.checkpoint!.walPositions : [0, 0], `${step}: replay starts`);
    }
    const pool = await CoreWalPool.start({ dir: walDir, workers: 2 });
    await pool.close();
  }
});
