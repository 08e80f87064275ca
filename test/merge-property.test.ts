import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  PerCoreWalConfig, PerCoreWalManager, realFs, type PerCoreWalEntry, type WalFs,
} from '../src/index.js';
import { tempDir } from './helpers/tmp.js';

/** Syncs prove nothing in this test (nothing crashes) and would only slow it down. */
const noSyncFs: WalFs = { ...realFs, fdatasyncSync: () => {}, fsyncSync: () => {}, fsyncDir: () => {} };

type Cmd =
  | { t: 'put'; core: number; key: number; len: number }
  | { t: 'del'; core: number; key: number }
  | { t: 'epoch' }
  | { t: 'clock'; delta: number }
  | { t: 'sync'; core: number }
  | { t: 'barrier' }
  | { t: 'reopen' };

const cmdArb = (cores: number): fc.Arbitrary<Cmd> => {
  const core = fc.integer({ min: 0, max: cores - 1 });
  return fc.oneof(
    { weight: 10, arbitrary: fc.record({ t: fc.constant('put' as const), core, key: fc.nat(1000), len: fc.nat(40) }) },
    { weight: 3, arbitrary: fc.record({ t: fc.constant('del' as const), core, key: fc.nat(1000) }) },
    { weight: 2, arbitrary: fc.constant({ t: 'epoch' as const }) },
    // The wall clock jumps both ways, backwards as often as forwards.
    { weight: 4, arbitrary: fc.record({ t: fc.constant('clock' as const), delta: fc.integer({ min: -5000, max: 5000 }) }) },
    { weight: 1, arbitrary: fc.record({ t: fc.constant('sync' as const), core }) },
    { weight: 1, arbitrary: fc.constant({ t: 'barrier' as const }) },
    { weight: 1, arbitrary: fc.constant({ t: 'reopen' as const }) },
  );
};

/** What the test expects of one entry, computed without looking at the WAL. */
interface Model { core: number; seq: bigint; epoch: bigint; ts: bigint; type: string; key: string }

const modelCompare = (a: Model, b: Model): number =>
  a.epoch !== b.epoch ? (a.epoch < b.epoch ? -1 : 1)
    : a.ts !== b.ts ? (a.ts < b.ts ? -1 : 1)
      : a.core !== b.core ? a.core - b.core
        : a.seq < b.seq ? -1 : a.seq > b.seq ? 1 : 0;

const view = (e: PerCoreWalEntry): Model => ({
  core: e.coreId, seq: e.sequence, epoch: e.epoch, ts: e.timestampNs, type: e.operation.type,
  key: e.key() === undefined ? '' : Buffer.from(e.key()!).toString(),
});

test('property: merge over 1–8 cores equals the model sorted by (epoch, ts, core, seq) and keeps each core\'s write order', () => {
  const root = tempDir();
  let run = 0;
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 8 }).chain((cores) => fc.tuple(fc.constant(cores), fc.array(cmdArb(cores), { maxLength: 80 }))),
      ([cores, cmds]) => {
        const dir = join(root, `run-${run++}`);
        mkdirSync(dir);
        let now = 1_000_000_000n;
        const cfg = new PerCoreWalConfig(dir, cores, { preallocate: 0, bufferSize: 4096, fs: noSyncFs, clock: () => now });
        let m = PerCoreWalManager.create(cfg);
        // The model: per core, epoch, next sequence, last timestamp; and every entry written.
        let epoch = 0n;
        const seq = new Array<bigint>(cores).fill(0n);
        const lastTs = new Array<bigint>(cores).fill(0n);
        const written: Model[] = [];
        const append = (core: number, type: string, key: string) => {
          const ts = now > lastTs[core]! ? now : lastTs[core]!;
          lastTs[core] = ts;
          written.push({ core, seq: seq[core]!, epoch, ts, type, key });
          seq[core]!++;
        };
        try {
          for (const c of cmds) {
            switch (c.t) {
              case 'put':
                m.writer(c.core).appendPut(Buffer.from(`k${c.key}`), Buffer.alloc(c.len, 7));
                append(c.core, 'put', `k${c.key}`);
                break;
              case 'del':
                m.writer(c.core).appendDelete(Buffer.from(`k${c.key}`));
                append(c.core, 'delete', `k${c.key}`);
                break;
              case 'epoch':
                epoch++;
                assert.equal(m.advanceEpoch(), epoch);
                break;
              case 'clock':
                now += BigInt(c.delta);
                if (now < 0n) now = 0n;
                break;
              case 'sync':
                m.writer(c.core).sync();
                break;
              case 'barrier':
                m.writeEpochBarrierAll();
                for (let k = 0; k < cores; k++) append(k, 'epochBarrier', '');
                break;
              case 'reopen': {
                m.close();
                m = PerCoreWalManager.open(cfg);
                // Invariant 5: the highest epoch any entry reached; timestamps past the
                // latest entry at that epoch.
                const lasts = Array.from({ length: cores }, (_, k) => written.filter((w) => w.core === k).at(-1));
                epoch = lasts.reduce((e, l) => (l && l.epoch > e ? l.epoch : e), 0n);
                let floor = -1n;
                for (const l of lasts) if (l && l.epoch === epoch && l.ts > floor) floor = l.ts;
                for (let k = 0; k < cores; k++) if (floor + 1n > lastTs[k]!) lastTs[k] = floor + 1n;
                assert.equal(m.epoch(), epoch);
                break;
              }
            }
          }
          const merged = m.mergeSegments().map(view);
          const expected = [...written].sort(modelCompare);
          assert.deepEqual(merged, expected);
          for (let k = 0; k < cores; k++) {
            const mine = merged.filter((e) => e.core === k);
            assert.deepEqual(mine, written.filter((w) => w.core === k), `core ${k} replays in write order`);
            for (let i = 1; i < mine.length; i++) assert.ok(mine[i]!.ts >= mine[i - 1]!.ts && mine[i]!.seq > mine[i - 1]!.seq);
          }
          const cut = epoch / 2n;
          assert.deepEqual(m.mergeSegmentsUpToEpoch(cut).map(view), expected.filter((e) => e.epoch <= cut));
          // The streaming form yields the same sequence, one entry at a time.
          let i = 0;
          for (const e of m.mergeIter()) assert.deepEqual(view(e), expected[i++]);
          assert.equal(i, expected.length);
        } finally {
          m.close();
        }
      },
    ),
    { numRuns: 100 },
  );
});

test('mergeIter: upToEpoch, from positions, positions() to resume, early break releases files', () => {
  const dir = mkdtempSync(join(tempDir(), 'w-'));
  let now = 100n;
  const m = PerCoreWalManager.create(new PerCoreWalConfig(dir, 3, { preallocate: 0, clock: () => now }));
  for (let e = 0; e < 4; e++) {
    for (let c = 0; c < 3; c++) { m.writer(c).appendPut(Buffer.from(`e${e}c${c}`), Buffer.from('v')); now += 10n; }
    m.advanceEpoch();
  }
  const all = m.mergeSegments();
  assert.equal(all.length, 12);
  // Stop after epoch 1; positions() says where each segment resumes.
  const first = m.mergeIter({ upToEpoch: 1 });
  const part = [...first];
  assert.deepEqual(part.map(view), all.filter((e) => e.epoch <= 1n).map(view));
  const rest = m.mergeIter({ from: first.positions() }).toArray();
  assert.deepEqual([...part, ...rest].map(view), all.map(view));
  // Breaking out of a for…of closes the readers (return() is called).
  const it = m.mergeIter();
  let n = 0;
  for (const _ of it) if (++n === 2) break;
  assert.equal(it.next().done, true, 'a closed iterator is done');
  assert.equal(it.count(), 2);
  assert.throws(() => m.mergeIter({ from: [0, 0] }), (e: unknown) => (e as { code?: string }).code === 'INVALID_ARGUMENT');
  m.close();
});


