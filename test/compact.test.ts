import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { CoreWalWriter, PerCoreWalError, PerCoreWalReader } from '../src/index.js';
import { barrierCrcAt } from '../src/checkpoint/resume.js';
import { SimDisk, SimPowerLoss } from '../src/testing/index.js';
import { fillAroundBarrier, putKeysFrom } from './helpers/segment.js';
import { b, tempDir } from './helpers/tmp.js';

// CoreWalWriter.compactFrom: the reset of a writer that went on appending after a
// checkpoint's barrier. Whatever moment a crash hits, the records after the barrier
// survive exactly once: in the old segment after the barrier, or at the front of the new.

const dir = tempDir();

const keysFrom = putKeysFrom;
const fill = fillAroundBarrier;

test('compactFrom keeps exactly the records after the barrier, at the front, and appending goes on after them', () => {
  const path = join(dir, 'basic.log');
  const w = CoreWalWriter.create(0, path);
  const barrierEnd = fill(w, 500, 300);
  const seqBefore = w.sequence();
  const n = w.compactFrom(barrierEnd);
  assert.equal(n, w.position());
  assert.equal(w.syncedPosition(), n);
  assert.equal(w.sequence(), seqBefore);
  assert.ok(!fs.existsSync(`${path}.compact`));
  assert.deepEqual(keysFrom(path, 0), Array.from({ length: 300 }, (_, i) => `b${i}`));
  w.appendPut(b('c0'), b('after'));
  w.sync();
  const end = w.position();
  const seq = w.sequence();
  w.close();
  // Reopened, the writer resumes after everything kept (preallocated zeros beyond are kept too).
  const again = CoreWalWriter.create(0, path);
  assert.equal(again.position(), end);
  assert.equal(again.sequence(), seq);
  again.close();
  const keys = keysFrom(path, 0);
  assert.equal(keys.length, 301);
  assert.equal(keys[300], 'c0');
});

test('compactFrom at the end empties the segment; at 0 changes nothing', () => {
  const path = join(dir, 'ends.log');
  const w = CoreWalWriter.create(0, path);
  const barrierEnd = fill(w, 10, 0);
  assert.equal(w.compactFrom(0), barrierEnd);
  assert.equal(keysFrom(path, 0).length, 10);
  assert.equal(w.compactFrom(barrierEnd), 0);
  assert.equal(w.position(), 0);
  assert.deepEqual(keysFrom(path, 0), []);
  w.close();
});

test('compactFrom refuses a position that is no record boundary, past the end, or not a number; the writer stays usable', () => {
  const path = join(dir, 'bad.log');
  const w = CoreWalWriter.create(0, path);
  const barrierEnd = fill(w, 20, 20);
  const size = w.position();
  const code = (f: () => unknown): string | undefined => {
    try { f(); } catch (e) { assert.ok(e instanceof PerCoreWalError); return e.code; }
    return undefined;
  };
  assert.equal(code(() => w.compactFrom(barrierEnd - 1)), 'INVALID_POSITION');
  assert.equal(code(() => w.compactFrom(barrierEnd + 3)), 'INVALID_POSITION');
  assert.equal(code(() => w.compactFrom(size + 1)), 'INVALID_POSITION');
  assert.equal(code(() => w.compactFrom(-1)), 'INVALID_POSITION');
  assert.ok(!fs.existsSync(`${path}.compact`));
  assert.equal(w.isPoisoned(), false);
  assert.equal(w.position(), size);
  assert.equal(keysFrom(path, 0).length, 40);
  w.compactFrom(barrierEnd);
  assert.deepEqual(keysFrom(path, 0), Array.from({ length: 20 }, (_, i) => `b${i}`));
  w.close();
});

test('compactFrom copies a record larger than its copy block', () => {
  const path = join(dir, 'big.log');
  const w = CoreWalWriter.create(0, path, { bufferSize: 1 << 16 });
  const big = Buffer.alloc(6 << 20, 0x5a);
  const barrierEnd = fill(w, 3, 0);
  w.appendPut(b('small'), b('x'));
  w.appendPut(b('big'), big);
  w.appendPut(b('tail'), b('y'));
  w.compactFrom(barrierEnd);
  const r = PerCoreWalReader.open(0, path);
  const got: [string, number][] = [];
  for (let e = r.readNext(); e.kind === 'entry'; e = r.readNext()) {
    const op = e.entry.operation;
    if (op.type === 'put') got.push([Buffer.from(op.key).toString(), op.value.length]);
  }
  r.close();
  assert.deepEqual(got, [['small', 1], ['big', big.length], ['tail', 1]]);
  w.close();
});

test('a power cut at every call of compactFrom leaves the records after the barrier exactly once', () => {
  let cases = 0;
  for (const seed of [1, 2, 3, 4]) {
    for (let cut = 0; ; cut++) {
      const disk = new SimDisk({ seed });
      disk.mkdirSync('/wal', { recursive: true });
      const path = '/wal/wal-0.log';
      const w = CoreWalWriter.create(0, path, { fs: disk, preallocate: seed % 2 === 0 ? 0 : 64 << 10 });
      const barrierEnd = fill(w, 40, 25);
      w.sync();
      const crc = barrierCrcAt(disk, path, 0, barrierEnd);
      assert.notEqual(crc, 0);
      disk.powerCut(cut, seed * 1000 + cut);
      let finished = false;
      try {
        w.compactFrom(barrierEnd);
        finished = true;
      } catch (e) {
        if (!(e instanceof SimPowerLoss) && disk.afterPowerCut === null) throw e;
      }
      const after = disk.afterPowerCut ?? disk.crash(seed * 1000 + cut);
      // What recovery does (replayStarts): after the barrier if it still stands there, else from 0.
      const start = barrierCrcAt(after, path, 0, barrierEnd) === crc ? barrierEnd : 0;
      assert.deepEqual(keysFrom(path, start, after), Array.from({ length: 25 }, (_, i) => `b${i}`),
        `seed ${seed}, power cut after ${cut} calls (finished: ${finished})`);
      cases++;
      if (finished) {
        // Appends after the compaction go to the new segment, and its name must be durable.
        disk.powerCut(Infinity, 0);
        for (let i = 0; i < 5; i++) w.appendPut(b(`c${i}`), b('later'));
        w.sync();
        const later = disk.crash(seed);
        const from = barrierCrcAt(later, path, 0, barrierEnd) === crc ? barrierEnd : 0;
        assert.deepEqual(keysFrom(path, from, later), [...Array.from({ length: 25 }, (_, i) => `b${i}`), ...Array.from({ length: 5 }, (_, i) => `c${i}`)],
          `seed ${seed}: records synced after the compaction`);
        break;
      }
      assert.ok(cut < 200, 'compactFrom makes a bounded number of calls');
    }
  }
  assert.ok(cases > 20, `${cases} crash points`);
});
