import assert from 'node:assert/strict';
import { cpSync, mkdirSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  PerCoreWalConfig, PerCoreWalEntry, PerCoreWalError, PerCoreWalManager, PerCoreWalReader, realFs,
  type SegmentOpenReport, type WalFs,
} from '../src/index.js';
import { b, tempDir } from './helpers/tmp.js';

/**
 * Real files, but fdatasync/fsync are no-ops: these tests emulate the crash by editing
 * the files, so the syncs prove nothing here and would only make hundreds of reopenings slow.
 */
const noSyncFs: WalFs = { ...realFs, fdatasyncSync: () => {}, fsyncSync: () => {}, fsyncDir: () => {} };

const id = (e: PerCoreWalEntry) => `${e.coreId}/${e.sequence}/${e.epoch}/${e.timestampNs}/${e.operation.type}/${Buffer.from(e.key() ?? []).toString()}`;

interface Written {
  /** Start and end of every record, per core. */
  bounds: { start: number; end: number }[][];
  merged: PerCoreWalEntry[];
}

/** A WAL of `cores` segments with varied records, epochs, and a clock that steps back. */
function writeWal(dir: string, cores: number): Written {
  let now = 1_000_000n;
  const clock = () => now;
  const m = PerCoreWalManager.create(new PerCoreWalConfig(dir, cores, { preallocate: 0, clock, fs: noSyncFs }));
  const bounds: { start: number; end: number }[][] = Array.from({ length: cores }, () => []);
  const rec = (c: number, start: number) => bounds[c]!.push({ start, end: m.writer(c).position() });
  for (let round = 0; round < 4; round++) {
    for (let c = 0; c < cores; c++) {
      const w = m.writer(c);
      rec(c, w.appendPut(b(`k${c}.${round}`), b(`value-${c}-${round}-v`)));
      now += round === 2 ? -500n : 100n; // the wall clock steps back in round 2
      if (round === 1) rec(c, w.appendDelete(b(`k${c}.0`)));
      if (round === 3 && c % 2 === 1) rec(c, w.appendCommit({ src: 10 + c }, 5));
    }
    if (round === 1) m.syncAll();
    if (round === 2) { m.advanceEpoch(); m.writeEpochBarrierAll(); for (let c = 0; c < cores; c++) bounds[c]!.push({ start: bounds[c]!.at(-1)!.end, end: m.writer(c).position() }); }
  }
  const merged = m.mergeSegments();
  m.close();
  return { bounds, merged };
}

function expectAppendsSortLast(m: PerCoreWalManager, survivors: PerCoreWalEntry[]): void {
  for (let c = 0; c < m.numCores(); c++) m.writer(c).appendPut(b(`after-${c}`), b('x'));
  const all = m.mergeSegments();
  assert.equal(all.length, survivors.length + m.numCores());
  assert.deepEqual(all.slice(0, survivors.length).map(id), survivors.map(id), 'survivors keep their order and come first');
  const tail = all.slice(survivors.length);
  assert.deepEqual(tail.map((e) => Buffer.from(e.key()!).toString()).sort(), Array.from({ length: m.numCores() }, (_, c) => `after-${c}`).sort());
  for (const e of tail) {
    const prev = survivors.filter((s) => s.coreId === e.coreId).at(-1);
    if (prev) assert.ok(e.sequence > prev.sequence, 'sequences continue after the survivors');
  }
}

test('crash at every byte of the last record of each core (truncated and zero-filled): open cuts exactly that record', () => {
  const root = tempDir();
  const cores = 3;
  const orig = join(root, 'orig');
  const { bounds, merged } = writeWal(orig, cores);
  assert.equal(merged.length, bounds.flat().length, 'every record written is merged');
  let cases = 0;
  let intactCases = 0;
  for (let c = 0; c < cores; c++) {
    const last = bounds[c]!.at(-1)!;
    const lastEntry = merged.filter((e) => e.coreId === c).at(-1)!;
    const expected = merged.filter((e) => e !== lastEntry);
    const originalBytes = readFileSync(join(orig, `wal-${c}.log`));
    assert.equal(originalBytes.length, last.end);
    for (const mode of ['truncate', 'zero-fill'] as const) {
      for (let at = last.start; at < last.end; at++) {
        const dir = join(root, `c${c}-${mode}-${at}`);
        cpSync(orig, dir, { recursive: true });
        const seg = join(dir, `wal-${c}.log`);
        if (mode === 'truncate') truncateSync(seg, at);
        else {
          // Zeros from the crash point on, and preallocated zeros beyond the old end.
          const bytes = Buffer.concat([originalBytes.subarray(0, at), Buffer.alloc(last.end - at + 4096)]);
          writeFileSync(seg, bytes);
        }
        const logged: SegmentOpenReport[] = [];
        const m = PerCoreWalManager.open(new PerCoreWalConfig(dir, cores, { preallocate: 0, fs: noSyncFs }), {
          logger: (_msg, r) => logged.push(r),
        });
        const rep = m.openReport()[c]!;
        const crashedLen = mode === 'truncate' ? at : last.end + 4096;
        // Zeroing bytes that were zero already (a commit's high offset bytes) loses nothing.
        const intact = mode === 'zero-fill' && originalBytes.subarray(at, last.end).every((x) => x === 0);
        const cleanCut = at === last.start || intact; // nothing torn: the crash hit a record boundary
        const where = `core ${c} ${mode} at ${at}`;
        assert.equal(rep.validEnd, intact ? last.end : last.start, where);
        assert.equal(rep.tail, cleanCut ? 'clean' : 'torn', where);
        assert.equal(rep.fileLen, crashedLen);
        assert.equal(rep.bytesCut, cleanCut ? 0 : crashedLen - last.start);
        assert.equal(logged.length, cleanCut ? 0 : 1);
        for (let o = 0; o < cores; o++) if (o !== c) assert.equal(m.openReport()[o]!.tail, 'clean');
        const survivors = m.mergeSegments();
        assert.deepEqual(survivors.map(id), (intact ? merged : expected).map(id), `${where}: only the torn record is gone`);
        assert.equal(m.epoch(), merged.at(-1)!.epoch);
        assert.equal(m.writer(c).sequence(), intact ? lastEntry.sequence + 1n : lastEntry.sequence, 'a torn record\'s sequence is reused: it never existed');
        assert.equal(statSync(seg).size, cleanCut ? crashedLen : last.start, 'torn bytes cut on disk, preallocated zeros kept');
        if (intact) intactCases++;
        expectAppendsSortLast(m, survivors);
        m.close();
        cases++;
      }
    }
  }
  assert.ok(cases > 3 * 2 * 50);
  assert.ok(intactCases > 0 && intactCases < 8, 'the commit record ends in zero bytes: zero-filling them loses nothing');
});

test('every core torn at once, on the real fs with real syncs: each loses only its last record', () => {
  const root = tempDir();
  const { bounds, merged } = writeWal(join(root, 'orig'), 4);
  const dir = join(root, 'crash');
  cpSync(join(root, 'orig'), dir, { recursive: true });
  for (let c = 0; c < 4; c++) {
    const last = bounds[c]!.at(-1)!;
    truncateSync(join(dir, `wal-${c}.log`), last.start + 1 + c * 7);
  }
  const m = PerCoreWalManager.open(new PerCoreWalConfig(dir, 4, { preallocate: 0 }));
  const lastOf = new Set([0, 1, 2, 3].map((c) => merged.filter((e) => e.coreId === c).at(-1)!));
  const survivors = m.mergeSegments();
  assert.deepEqual(survivors.map(id), merged.filter((e) => !lastOf.has(e)).map(id));
  assert.deepEqual(m.openReport().map((r) => r.tail), ['torn', 'torn', 'torn', 'torn']);
  for (let c = 0; c < 4; c++) assert.equal(statSync(join(dir, `wal-${c}.log`)).size, bounds[c]!.at(-1)!.start, 'cut durably on disk');
  expectAppendsSortLast(m, survivors);
  m.close();
});

/** Flips one payload byte of the record at `at`. */
function corrupt(path: string, at: number): void {
  const bytes = readFileSync(path);
  bytes[at + 8 + 3] ^= 0x40;
  writeFileSync(path, bytes);
}

test('damage to synced data: open throws CORRUPTED naming core, file and position, and cuts nothing anywhere', () => {
  const dir = tempDir();
  const cfg = new PerCoreWalConfig(dir, 2, { preallocate: 0 });
  const m = PerCoreWalManager.create(cfg);
  const w = m.writer(1);
  w.appendPut(b('a'), b('1'));
  const posB = w.appendPut(b('b'), b('2'));
  w.sync();
  w.appendPut(b('c'), b('3')); // carries syncedBoundary past B: B was promised durable
  w.sync();
  const torn = m.writer(0);
  torn.appendPut(b('z'), b('9'));
  torn.sync();
  m.close();
  corrupt(cfg.segmentPath(1), posB);
  truncateSync(cfg.segmentPath(0), statSync(cfg.segmentPath(0)).size - 3);
  const before = [readFileSync(cfg.segmentPath(0)), readFileSync(cfg.segmentPath(1))];
  assert.throws(() => PerCoreWalManager.open(cfg), (e: unknown) => {
    assert.ok(e instanceof PerCoreWalError);
    assert.equal(e.code, 'CORRUPTED');
    assert.equal(e.coreId, 1);
    assert.equal(e.path, cfg.segmentPath(1));
    assert.equal(e.position, posB);
    assert.match(e.message, new RegExp(`wal-1\\.log.*byte ${posB}`));
    return true;
  });
  assert.deepEqual([readFileSync(cfg.segmentPath(0)), readFileSync(cfg.segmentPath(1))], before);
  // create refuses both segments' tails the same way: nothing appended after bad bytes.
  assert.throws(() => PerCoreWalManager.create(cfg), (e: unknown) => e instanceof PerCoreWalError && e.code === 'INVALID_TAIL' && e.coreId === 0);
});

test('crash debris (a lost unsynced record followed by a later unsynced one) is cut like a torn tail and reported', () => {
  const dir = tempDir();
  const cfg = new PerCoreWalConfig(dir, 1, { preallocate: 0 });
  const m = PerCoreWalManager.create(cfg);
  const w = m.writer(0);
  w.appendPut(b('a'), b('1'));
  w.sync();
  const posB = w.appendPut(b('b'), b('2'));
  w.appendPut(b('c'), b('3'));
  m.close(); // unsynced: B's page may be lost while C's persisted
  corrupt(cfg.segmentPath(0), posB);
  const len = statSync(cfg.segmentPath(0)).size;
  const messages: string[] = [];
  const m2 = PerCoreWalManager.open(cfg, { logger: (msg) => messages.push(msg) });
  const r = m2.openReport()[0]!;
  assert.equal(r.tail, 'debris');
  assert.equal(r.validEnd, posB);
  assert.equal(r.bytesCut, len - posB);
  assert.equal(r.bad!.kind, 'checksumMismatch');
  assert.equal(r.entries, 1);
  assert.equal(messages.length, 1);
  assert.match(messages[0]!, /debris.*wal-0\.log/);
  assert.equal(statSync(cfg.segmentPath(0)).size, posB);
  assert.deepEqual(m2.mergeSegments().map((e) => e.key()), [b('a')]);
  m2.writer(0).appendPut(b('d'), b('4'));
  m2.close();
  assert.deepEqual(PerCoreWalReader.open(0, cfg.segmentPath(0)).readAll().map((e) => Buffer.from(e.key()!).toString()), ['a', 'd']);
});

test('preallocated segments: trailing zeros are a clean end and kept; a record torn inside them is cut', () => {
  const dir = tempDir();
  const cfg = new PerCoreWalConfig(dir, 2, { preallocate: 64 * 1024 });
  const m = PerCoreWalManager.create(cfg);
  m.writer(0).appendPut(b('a'), b('1'));
  const posB = m.writer(1).appendPut(b('b'), b('2'));
  const endB = m.writer(1).position();
  m.syncAll();
  m.close();
  const len0 = statSync(cfg.segmentPath(0)).size;
  assert.ok(len0 > 64 * 1024);
  const bytes = readFileSync(cfg.segmentPath(1));
  bytes[endB - 1] ^= 0xff; // the last record is torn; zeros follow it
  writeFileSync(cfg.segmentPath(1), bytes);
  const m2 = PerCoreWalManager.open(cfg);
  assert.deepEqual(m2.openReport().map((r) => [r.tail, r.bytesCut]), [['clean', 0], ['torn', bytes.length - posB]]);
  assert.equal(statSync(cfg.segmentPath(0)).size, len0, 'preallocated zeros are kept');
  assert.equal(statSync(cfg.segmentPath(1)).size, posB);
  assert.deepEqual(m2.mergeSegments().map((e) => e.key()), [b('a')]);
  m2.close();
});

test('create on an existing WAL: a clean one is resumed (epoch and sequences), an invalid tail is refused before anything is written', () => {
  const dir = tempDir();
  const cfg = new PerCoreWalConfig(dir, 2, { preallocate: 0 });
  const m = PerCoreWalManager.create(cfg);
  m.advanceEpoch();
  m.writer(1).appendPut(b('a'), b('1'));
  m.close();
  const again = PerCoreWalManager.create(cfg);
  assert.equal(again.epoch(), 1n);
  assert.equal(again.writer(1).sequence(), 1n);
  assert.equal(again.writer(0).epoch(), 1n);
  again.close();

  const dir2 = tempDir();
  mkdirSync(dir2, { recursive: true });
  const cfg2 = new PerCoreWalConfig(dir2, 3, { preallocate: 0 });
  writeFileSync(cfg2.segmentPath(1), Buffer.from([9, 0, 0, 0, 1, 2]));
  assert.throws(() => PerCoreWalManager.create(cfg2), (e: unknown) => e instanceof PerCoreWalError && e.code === 'INVALID_TAIL' && e.coreId === 1);
  assert.throws(() => statSync(cfg2.segmentPath(0)), /ENOENT/, 'no segment was created');
});
