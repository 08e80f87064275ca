import assert from 'node:assert/strict';
import { cpSync, existsSync, openSync, closeSync, truncateSync, writeSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { CheckpointStore, encodeRecord, PerCoreWalEntry, recoverPerCore, scanSegment, type StateView } from '../src/index.js';
import { checkRecovered } from '../src/cli/demo/check.js';
import { ingestThenKill, percentiles } from '../src/cli/demo/ingest.js';
import { ingestValue } from '../src/worker/ingest-child.js';
import { corewal, corewalInTerminal, json } from './helpers/cli.js';
import { tempDir } from './helpers/tmp.js';

describe('corewal demo as a child process', () => {
  test('--seconds 2 --json: every acknowledged record recovered, at least one checkpoint, temporary directory removed', { timeout: 60_000 }, () => {
    const r = corewal(['demo', '--seconds', '2', '--json']);
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    const j = json(r);
    assert.equal(j.ok, true);
    assert.equal(j.lost, 0);
    assert.equal(j.wrong, 0);
    assert.equal(j.corrupt, 0);
    assert.ok(j.acknowledged > 0, 'it acknowledged something');
    assert.ok(j.recovered >= j.acknowledged, `recovered ${j.recovered} >= acknowledged ${j.acknowledged}`);
    assert.equal(j.recovered, j.acknowledged + j.unacknowledgedRecovered);
    assert.ok(j.checkpoints >= 1, 'a checkpoint was taken before the kill');
    assert.notEqual(j.recovery.checkpointId, null, 'recovery started from a checkpoint');
    assert.equal(j.cores, availableParallelism());
    assert.equal(j.workerThreads, j.cores);
    assert.equal(j.ingest.killedWith, 'SIGKILL');
    assert.ok(j.seconds >= 2 && j.seconds < 15, `ingest ran ${j.seconds} s`);
    assert.ok(j.recordsPerSecond > 0);
    assert.ok(j.latencyMs.p50 > 0 && j.latencyMs.p50 <= j.latencyMs.p99 && j.latencyMs.p99 <= j.latencyMs.max, JSON.stringify(j.latencyMs));
    assert.equal(j.recovery.segments.length, j.cores);
    assert.equal(j.otherKeys, 0);
    assert.equal(j.injected, null);
    assert.equal(j.kept, false);
    assert.equal(existsSync(j.dir), false, 'the temporary directory is removed');
    assert.doesNotMatch(r.stderr, /[█░]/, 'no progress bar into a pipe');
  });

  test('the check can fail: acknowledged records lost on purpose → lost > 0, exit 1, directory kept; a rerun resumes it', { timeout: 60_000 }, () => {
    const dir = join(tempDir(), 'demo');
    const bad = corewal(['demo', dir, '--seconds', '1', '--cores', '2', '--json', '--inject', 'drop-checkpoints']);
    assert.equal(bad.code, 1, bad.stderr);
    const j = json(bad);
    assert.equal(j.ok, false);
    assert.equal(j.injected, 'drop-checkpoints');
    assert.ok(j.checkpoints >= 1);
    assert.equal(j.recovery.checkpointId, null, 'the checkpoints are gone');
    assert.ok(j.lost > 0, `lost ${j.lost}`);
    assert.ok(j.examples.lost.length > 0 && j.examples.lost.every((k: string) => k.startsWith(j.keyPrefix)));
    assert.equal(j.kept, true);
    assert.ok(existsSync(join(dir, 'wal', 'wal-0.log')));
    // The same directory again: the pool resumes the WAL, the old keys are left out of the check.
    const again = corewal(['demo', dir, '--seconds', '1', '--json']);
    assert.equal(again.code, 0, again.stderr);
    const k = json(again);
    assert.equal(k.cores, 2, 'the cores of the WAL already there');
    assert.equal(k.lost, 0);
    assert.ok(k.otherKeys > 0, 'the first run\'s surviving keys are still there');
    assert.notEqual(k.keyPrefix, j.keyPrefix);
    // A mismatched --cores is a usage error.
    assert.equal(corewal(['demo', dir, '--seconds', '1', '--cores', '3']).code, 2);
  });

  test('in a terminal: a bar for the ingest, then one for recovery, then the text summary', { timeout: 60_000 }, () => {
    const args = ['demo', '--seconds', '1', '--cores', '1', '--value-size', '16', '--producers', '8'];
    const tty = corewalInTerminal(args);
    const r = tty ?? corewal(args);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    if (tty !== null) {
      assert.match(tty.stdout, /ingest  [█░]+ \d+% \| [\d.]+ of 1 s \| .*acknowledged \| \d+ checkpoints?/);
      assert.match(tty.stdout, /recover [█░]+ \d+% \| .* \| (loading the newest valid checkpoint|replaying the WAL)/);
    }
    // What is left once the bars are gone: the summary, line by line.
    const text = r.stdout.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '').replace(/\r/g, '');
    for (const re of [
      /^corewal demo: 1 worker thread \(one segment each\), 8 producers, 16-byte values/m,
      /^ingest +\d+\.\d s, [\d,]+ records acknowledged as durable: [\d,]+ records\/s$/m,
      /^commit latency +p50 [\d.]+ ms, p99 [\d.]+ ms/m,
      /^checkpoints +[1-9]\d* taken$/m,
      /^crash +SIGKILL at \d+\.\d s, mid-stream$/m,
      /^recovered +[\d,]+ records/m,
      /^lost +0 of [\d,]+ acknowledged records$/m,
      /^OK: every record acknowledged as durable survived the SIGKILL with its value\.$/m,
    ]) assert.match(text, re);
  });

  test('usage errors exit 2', () => {
    for (const args of [['--seconds', '0'], ['--cores', '0'], ['--value-size', 'x'], ['--producers', '-1'], ['--inject', 'nonsense']]) {
      assert.equal(corewal(['demo', ...args]).code, 2, args.join(' '));
    }
    assert.match(corewal(['demo', '--help']).stdout, /--seconds <s>[\s\S]*--cores[\s\S]*--value-size[\s\S]*--json/);
    assert.doesNotMatch(corewal(['demo', '--help']).stdout, /--inject/, 'the test hook is not advertised');
  });
});

/** A StateView over a plain map, for states made up by hand. */
function view(entries: [string, Uint8Array][]): StateView {
  const m = new Map(entries.map(([k, v]) => [k, v]));
  const get = (k: Uint8Array | string) => m.get(typeof k === 'string' ? k : Buffer.from(k).toString());
  return {
    get, has: (k) => get(k) !== undefined, get size() { return m.size; },
    *entries() { for (const [k, v] of m) yield [Buffer.from(k), v] as [Uint8Array, Uint8Array]; },
  };
}

describe('the demo\'s check', () => {
  const P = 'k1-';
  const good = (i: number): [string, Uint8Array] => [`${P}${i}`, ingestValue(`${P}${i}`, 32)];

  test('a faithful state passes; unacknowledged survivors and other runs\' keys are counted, not failed', () => {
    const c = checkRecovered(view([good(0), good(1), good(2), good(7), ['k0-5', Buffer.from('old')]]), [0, 2, 1, 2], P, 32);
    assert.deepEqual({ ...c, examples: undefined }, {
      acknowledged: 3, recovered: 4, lost: 0, wrong: 0, corrupt: 0, unacknowledgedRecovered: 1, otherKeys: 1, examples: undefined, ok: true,
    });
  });

  test('a deliberately corrupted state fails: a missing key is lost, a changed value is wrong, a bad survivor is corrupt', () => {
    const flipped = Buffer.from(ingestValue(`${P}1`, 32));
    flipped[31] ^= 1;
    const c = checkRecovered(view([good(0), [`${P}1`, flipped], good(3), [`${P}9`, Buffer.from('garbage')], [`${P}x`, Buffer.from('?')]]), [0, 1, 2, 3], P, 32);
    assert.equal(c.ok, false);
    assert.equal(c.lost, 1);
    assert.deepEqual(c.examples.lost, [`${P}2`]);
    assert.equal(c.wrong, 1);
    assert.deepEqual(c.examples.wrong, [`${P}1`]);
    assert.equal(c.corrupt, 2);
    assert.deepEqual(c.examples.corrupt.sort(), [`${P}9`, `${P}x`]);
    // A value cut short is wrong too, not only a flipped byte.
    assert.equal(checkRecovered(view([[`${P}0`, ingestValue(`${P}0`, 32).subarray(0, 31)]]), [0], P, 32).wrong, 1);
  });

  test('percentiles: nearest rank', () => {
    const v = Uint32Array.from([5, 1, 4, 2, 3, 100, 6, 7, 8, 9]);
    assert.deepEqual(percentiles(v, [0.5, 0.9, 0.99, 1]), [5, 9, 100, 100]);
    assert.deepEqual(percentiles(new Uint32Array(0), [0.5]), [0]);
  });

  test('on a real killed ingest: the copy passes; losing one acknowledged record or changing one value in a copy is caught', { timeout: 60_000 }, async () => {
    const root = tempDir();
    const walDir = join(root, 'a', 'wal'), cpDir = join(root, 'a', 'checkpoints');
    const prefix = 't-';
    const VB = 48;
    const out = await ingestThenKill({ walDir, checkpointDir: cpDir, cores: 2, producers: 32, valueBytes: VB, checkpointMs: 300, seconds: 1, prefix });
    assert.ok(out.checkpoints.length >= 1 && out.acked.length > 0);
    const check = (dir: string) => {
      const rec = recoverPerCore(join(dir, 'wal'), join(dir, 'checkpoints'), 2);
      return checkRecovered(rec.state, out.acked, prefix, VB);
    };
    assert.equal(check(join(root, 'a')).ok, true);
    const acked = new Set(Array.from(out.acked, (n) => `${prefix}${n}`));

    // Acknowledged puts that live only in core 0's WAL (not in the newest checkpoint).
    const copy = (name: string): string => { cpSync(join(root, 'a'), join(root, name), { recursive: true }); return join(root, name); };
    const inWal: { key: string; position: number; entry: PerCoreWalEntry }[] = [];
    const store = CheckpointStore.open({ checkpointDir: copy('cp-probe') + '/checkpoints' });
    scanSegment(0, join(walDir, 'wal-0.log'), {
      onEntry: (e, position) => {
        const k = e.key();
        if (e.isPut() && k !== undefined) {
          const key = Buffer.from(k).toString();
          if (acked.has(key) && store.get(key) === undefined) inWal.push({ key, position, entry: e });
        }
      },
    });
    assert.ok(inWal.length >= 2, `acknowledged puts in the WAL after the last checkpoint: ${inWal.length}`);
    const victim = inWal[inWal.length - 1]!;

    // Lose it (and what follows it on core 0): exactly the acknowledged ones among those are lost.
    const b = copy('b');
    truncateSync(join(b, 'wal', 'wal-0.log'), victim.position);
    const lost = check(b);
    assert.equal(lost.lost, 1, JSON.stringify(lost));
    assert.deepEqual(lost.examples.lost, [victim.key]);

    // Change its value: same length, a valid CRC (a bug, not a bad disk): wrong, not lost.
    const c = copy('c');
    const e = victim.entry;
    const other = Buffer.from(e.value()!);
    other[other.length - 1] ^= 0x20;
    const rec = encodeRecord(PerCoreWalEntry.put(e.coreId, e.epoch, e.sequence, e.key()!, other, e.timestampNs), e.syncedBoundary);
    const fd = openSync(join(c, 'wal', 'wal-0.log'), 'r+');
    try { writeSync(fd, rec, 0, rec.length, victim.position); } finally { closeSync(fd); }
    const wrong = check(c);
    assert.equal(wrong.lost, 0);
    assert.equal(wrong.wrong, 1);
    assert.deepEqual(wrong.examples.wrong, [victim.key]);
  });
});
