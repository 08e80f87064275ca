import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { CoreWalWriter, PerCoreWalError, PerCoreWalReader } from '../src/index.js';
import { FaultyFs } from '../src/testing/index.js';
import { fillAroundBarrier } from './helpers/segment.js';
import { b, tempDir } from './helpers/tmp.js';

// CoreWalWriter.beginCompaction: compactFrom in two phases, appends going on during the
// first. What the compacted segment holds must be what compactFrom would have left had it
// run after those appends: the records kept, then the new ones, at their old positions
// minus the compaction's start.

const dir = tempDir();

/** Each Put of a segment: its key and the position its record starts at. */
function puts(path: string): [string, number][] {
  const r = PerCoreWalReader.open(0, path);
  const out: [string, number][] = [];
  try {
    for (;;) {
      const at = r.position();
      const e = r.readNext();
      if (e.kind !== 'entry') break;
      const op = e.entry.operation;
      if (op.type === 'put') out.push([Buffer.from(op.key).toString(), at]);
    }
  } finally {
    r.close();
  }
  return out;
}

/** Puts, a barrier, more Puts, all synced: returns the barrier's end. */
const fill = (w: CoreWalWriter, before: number, after: number, value = b('value')): number => fillAroundBarrier(w, before, after, value, true);

function codeOf(f: () => unknown): string | undefined {
  try { f(); } catch (e) { assert.ok(e instanceof PerCoreWalError, String(e)); return e.code; }
  return undefined;
}

async function rejectionCode(p: Promise<unknown>): Promise<string | undefined> {
  try { await p; } catch (e) { assert.ok(e instanceof PerCoreWalError, String(e)); return e.code; }
  return undefined;
}

test('appends made during phase 1 follow the kept records, in order, at their old positions minus the start', () => {
  const path = join(dir, 'interleaved.log');
  const w = CoreWalWriter.create(0, path);
  const value = Buffer.alloc(2000, 0x61);
  const from = fill(w, 50, 400, value); // ~800 KB kept: several blocks
  const c = w.beginCompaction(from);
  assert.equal(c.phaseOneEnd(), w.position());
  const kept = puts(path).filter(([k]) => k.startsWith('b'));
  const added: [string, number][] = [];
  let slices = 0;
  // One block a slice (budget 0), a group of appends and a sync between slices: a worker's loop.
  for (let done = false; !done; slices++) {
    done = c.step(0);
    for (let i = 0; i < 3; i++) {
      const key = `c${added.length}`;
      added.push([key, w.appendPut(b(key), b(`v${added.length}`))]);
    }
    w.sync();
  }
  assert.ok(slices > 2, `the copy went in slices (${slices})`);
  const oldEnd = w.position();
  const n = c.finish();
  assert.equal(n, oldEnd - from);
  assert.equal(w.position(), n);
  assert.equal(w.syncedPosition(), n);
  assert.equal(w.runningCompaction(), null);
  assert.ok(!fs.existsSync(`${path}.compact`));
  const want = [...kept, ...added].map(([k, at]) => [k, at - from]);
  assert.deepEqual(puts(path), want);
  // Appending goes on after them, and a reopened writer resumes there.
  const at = w.appendPut(b('d0'), b('later'));
  assert.equal(at, n);
  w.sync();
  const end = w.position();
  w.close();
  const again = CoreWalWriter.create(0, path);
  assert.equal(again.position(), end);
  again.close();
  assert.deepEqual(puts(path).map(([k]) => k), [...want.map(([k]) => k), 'd0']);
});

test('copy() yields to the event loop between slices while appends go on', async () => {
  const path = join(dir, 'async.log');
  const w = CoreWalWriter.create(0, path);
  const from = fill(w, 10, 3000, Buffer.alloc(1000, 0x62)); // ~3 MB kept
  const c = w.beginCompaction(from);
  let appended = 0;
  let stop = false;
  const appender = (async () => {
    while (!stop) {
      w.appendPut(b(`c${appended}`), b('x'));
      appended++;
      w.sync();
      await new Promise((r) => setImmediate(r));
    }
  })();
  await c.copy(0);
  stop = true;
  await appender;
  assert.ok(appended > 1, `appends ran during the copy (${appended})`);
  c.finish();
  const keys = puts(path).map(([k]) => k);
  assert.deepEqual(keys, [...Array.from({ length: 3000 }, (_, i) => `b${i}`), ...Array.from({ length: appended }, (_, i) => `c${i}`)]);
  w.close();
});

test('the same as compactFrom without appends meanwhile; from 0 keeps everything, from the end empties', async () => {
  const a = join(dir, 'same-a.log');
  const bPath = join(dir, 'same-b.log');
  const wa = CoreWalWriter.create(0, a, { clock: () => 1000n });
  const wb = CoreWalWriter.create(0, bPath, { clock: () => 1000n });
  const fa = fill(wa, 30, 40);
  const fb = fill(wb, 30, 40);
  const c = wb.beginCompaction(fb);
  await c.copy();
  assert.equal(c.finish(), wa.compactFrom(fa));
  assert.deepEqual(fs.readFileSync(bPath).subarray(0, wb.position()), fs.readFileSync(a).subarray(0, wa.position()));
  wa.close();

  const all = wb.position();
  const z = wb.beginCompaction(0);
  await z.copy();
  assert.equal(z.finish(), all);
  const e = wb.beginCompaction(all);
  assert.equal(e.step(), true);
  assert.equal(e.finish(), 0);
  assert.deepEqual(puts(bPath), []);
  // From the end, records appended during phase 1 are all that is kept.
  wb.appendPut(b('x'), b('1'));
  wb.sync();
  const end = wb.position();
  const t = wb.beginCompaction(end);
  await t.copy();
  wb.appendPut(b('y'), b('2'));
  assert.equal(t.finish(), wb.position());
  assert.deepEqual(puts(bPath), [['y', 0]]);
  wb.close();
});

test('a CRC-damaged frame in phase 1 fails it with compactFrom\'s code; the temp file goes, the writer stays usable', () => {
  const path = join(dir, 'damaged.log');
  const w = CoreWalWriter.create(0, path);
  const from = fill(w, 5, 200);
  const victim = puts(path).find(([k]) => k === 'b120')![1];
  const flip = (p: string, v: number): void => {
    const fd = fs.openSync(p, 'r+');
    fs.writeSync(fd, Buffer.from([v]), 0, 1, victim + 20);
    fs.closeSync(fd);
  };
  const original = fs.readFileSync(path)[victim + 20]!;
  flip(path, original ^ 0xff);
  // compactFrom's verdict on the same bytes.
  const live = codeOf(() => w.compactFrom(from));
  assert.equal(live, 'INVALID_POSITION');
  assert.ok(!fs.existsSync(`${path}.compact`));

  const c = w.beginCompaction(from);
  let code: string | undefined;
  for (let done = false; !done && code === undefined; ) code = codeOf(() => { done = c.step(0); });
  assert.equal(code, live);
  assert.equal(c.isActive(), false);
  assert.equal(w.runningCompaction(), null);
  assert.ok(!fs.existsSync(`${path}.compact`));
  assert.equal(w.isPoisoned(), false);
  w.appendPut(b('after'), b('damage'));
  w.sync();
  // Repaired, the compaction goes through.
  flip(path, original);
  const again = w.beginCompaction(from);
  while (!again.step(0));
  again.finish();
  assert.equal(puts(path).length, 201);
  w.close();
});

test('a damaged frame appended during phase 1 fails the finish; the segment and the writer are as they were', () => {
  const path = join(dir, 'damaged-tail.log');
  const w = CoreWalWriter.create(0, path);
  const from = fill(w, 5, 20);
  const c = w.beginCompaction(from);
  while (!c.step(0));
  const at = w.appendPut(b('late'), b('value'));
  w.sync();
  const fd = fs.openSync(path, 'r+');
  fs.writeSync(fd, Buffer.from([0xee]), 0, 1, at + 30);
  fs.closeSync(fd);
  const size = w.position();
  assert.equal(codeOf(() => c.finish()), 'INVALID_POSITION');
  assert.ok(!fs.existsSync(`${path}.compact`));
  assert.equal(w.isPoisoned(), false);
  assert.equal(w.position(), size);
  assert.equal(w.runningCompaction(), null);
  w.close();
});

test('a failed fdatasync of the copy fails phase 1 (IO); the writer is not poisoned', async () => {
  const path = join(dir, 'copy-eio.log');
  const ffs = new FaultyFs();
  const w = CoreWalWriter.create(0, path, { fs: ffs });
  const from = fill(w, 5, 50);
  ffs.injectFault({ op: 'fdatasyncSync', path: /\.compact$/, code: 'EIO' });
  const c = w.beginCompaction(from);
  assert.equal(await rejectionCode(c.copy()), 'IO');
  assert.ok(!fs.existsSync(`${path}.compact`));
  assert.equal(w.isPoisoned(), false);
  assert.equal(codeOf(() => c.finish()), 'INVALID_ARGUMENT');
  const n = w.compactFrom(from);
  assert.equal(puts(path).length, 50);
  assert.equal(n, w.position());
  w.close();
});

test('the writer\'s own failed sync during phase 1 poisons it, and the compaction goes with its temp file', async () => {
  const path = join(dir, 'writer-eio.log');
  const ffs = new FaultyFs();
  const w = CoreWalWriter.create(0, path, { fs: ffs });
  const from = fill(w, 5, 50);
  const c = w.beginCompaction(from);
  c.step(0);
  ffs.injectFault({ op: 'fdatasyncSync', path, code: 'EIO' });
  w.appendPut(b('k'), b('v'));
  assert.equal(codeOf(() => w.sync()), 'IO');
  assert.equal(codeOf(() => c.finish()), 'POISONED');
  assert.ok(!fs.existsSync(`${path}.compact`));
  // The records kept and the one whose fdatasync failed (written, so readable) are all there.
  assert.equal(puts(path).length, 5 + 50 + 1);
  w.close();
});

test('one compaction at a time: another, truncate and reset are refused; close abandons it', async () => {
  const path = join(dir, 'guard.log');
  const w = CoreWalWriter.create(0, path);
  const from = fill(w, 5, 50);
  const c = w.beginCompaction(from);
  c.step(0);
  assert.ok(fs.existsSync(`${path}.compact`));
  assert.equal(codeOf(() => w.beginCompaction(from)), 'COMPACTION_IN_PROGRESS');
  assert.equal(codeOf(() => w.compactFrom(from)), 'COMPACTION_IN_PROGRESS');
  assert.equal(codeOf(() => w.truncate(0)), 'COMPACTION_IN_PROGRESS');
  assert.equal(codeOf(() => w.reset()), 'COMPACTION_IN_PROGRESS');
  w.appendPut(b('k'), b('v'));
  w.close();
  assert.equal(c.isActive(), false);
  assert.ok(!fs.existsSync(`${path}.compact`));
  assert.equal(puts(path).length, 5 + 50 + 1);

  // Closed while the copy's fdatasync runs: the compaction fails by itself once it returns.
  const p2 = join(dir, 'guard2.log');
  const w2 = CoreWalWriter.create(0, p2);
  const f2 = fill(w2, 5, 50);
  const c2 = w2.beginCompaction(f2);
  while (!c2.step());
  const syncing = c2.syncCopy();
  w2.close();
  assert.equal(await rejectionCode(syncing), 'CLOSED');
  assert.ok(!fs.existsSync(`${p2}.compact`));
});

test('phases out of order are refused', async () => {
  const path = join(dir, 'order.log');
  const w = CoreWalWriter.create(0, path);
  const from = fill(w, 5, 50);
  const c = w.beginCompaction(from);
  await assert.rejects(c.syncCopy(), (e) => e instanceof PerCoreWalError && e.code === 'INVALID_ARGUMENT');
  while (!c.step());
  const syncing = c.syncCopy();
  assert.equal(codeOf(() => c.finish()), 'INVALID_ARGUMENT');
  assert.equal(codeOf(() => c.abandon()), 'INVALID_ARGUMENT');
  await syncing;
  c.finish();
  assert.equal(codeOf(() => c.finish()), 'INVALID_ARGUMENT');
  c.abandon(); // idempotent once over
  w.close();
});
