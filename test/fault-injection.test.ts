import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { constants } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { PerCoreWalError, SyncStorageIo, ThreadPoolStorageIo } from '../src/index.js';
import type { IoCompletion, IoFd, StorageIo } from '../src/index.js';
import { FaultInjectingStorageIo } from '../src/testing/index.js';
import { waitForTokens } from './helpers/storage-io-suite.js';
import { b, tempDir } from './helpers/tmp.js';

const dir = tempDir();
let n = 0;
function setup(inner: StorageIo = new ThreadPoolStorageIo(), options?: ConstructorParameters<typeof FaultInjectingStorageIo>[1]): { fio: FaultInjectingStorageIo; fd: IoFd; p: string } {
  const p = join(dir, `fi-${n++}.bin`);
  fs.writeFileSync(p, '');
  const fio = new FaultInjectingStorageIo(inner, options);
  return { fio, fd: fio.registerFd(fs.openSync(p, 'r+')), p };
}
const results = (got: IoCompletion[]): Map<number, number> => new Map(got.map((c) => [c.token, c.result]));

test('failNext fails the chosen operation with EIO or ENOSPC; `after` and `times` pick which', async () => {
  const { fio, fd, p } = setup();
  const h = fio.inject({ op: 'write', after: 1, times: 1, errno: 'ENOSPC' });
  const t0 = fio.submitWrite(fd, b('aa'), 0);
  const t1 = fio.submitWrite(fd, b('bb'), 2);
  const res = results(await waitForTokens(fio, [t0, t1]));
  assert.equal(res.get(t0), 2);
  assert.equal(res.get(t1), -constants.errno.ENOSPC);
  assert.equal(h.fired, 1);
  assert.equal(h.matched, 2);
  const d = fio.submitDatasync(fd);
  assert.equal(results(await waitForTokens(fio, [d])).get(d), -constants.errno.ECANCELED, 'later operations on the fd are cancelled');
  fio.close();
  assert.equal(fs.readFileSync(p, 'utf8'), 'aa', 'the failed write never reached the file');
  assert.deepEqual(fio.log.map((l) => l.fault), ['none', 'errno', 'cancelled']);
});

test("afterFailure 'cancelWrites' lets datasyncs through; 'continue' lets everything through", async () => {
  const a = setup(new ThreadPoolStorageIo(), { afterFailure: 'cancelWrites' });
  a.fio.failNext('write', 'EIO');
  const w = a.fio.submitWrite(a.fd, b('x'), 0);
  const w2 = a.fio.submitWrite(a.fd, b('y'), 1);
  const s = a.fio.submitDatasync(a.fd);
  const r = results(await waitForTokens(a.fio, [w, w2, s]));
  assert.deepEqual([r.get(w), r.get(w2), r.get(s)], [-constants.errno.EIO, -constants.errno.ECANCELED, 0]);
  a.fio.close();

  const c = setup(new ThreadPoolStorageIo(), { afterFailure: 'continue' });
  c.fio.failNext('write', 5);
  const x = c.fio.submitWrite(c.fd, b('x'), 0);
  const y = c.fio.submitWrite(c.fd, b('y'), 1);
  const rc = results(await waitForTokens(c.fio, [x, y]));
  assert.deepEqual([rc.get(x), rc.get(y)], [-5, 1]);
  c.fio.close();
  assert.equal(fs.readFileSync(c.p, 'latin1'), '\0y', 'a lying disk: the later write landed after the hole');
});

test('a short write writes only its first bytes and reports that count', async () => {
  const { fio, fd, p } = setup(new SyncStorageIo());
  fio.shortWriteNext(3);
  const t = fio.submitWrite(fd, b('abcdefgh'), 0);
  const t2 = fio.submitWrite(fd, b('ij'), 8);
  const r = results(await waitForTokens(fio, [t, t2]));
  assert.equal(r.get(t), 3);
  assert.equal(r.get(t2), -constants.errno.ECANCELED);
  assert.deepEqual(fio.log.map((l) => l.fault), ['short', 'cancelled']);
  fio.close();
  assert.equal(fs.readFileSync(p, 'utf8'), 'abc');
});

test('a hold keeps completions back until release, then hands them out', async () => {
  const { fio, fd } = setup();
  const hold = fio.hold({ op: 'datasync' });
  const w = fio.submitWrite(fd, b('x'), 0);
  const s = fio.submitDatasync(fd);
  fio.flush();
  const got = await waitForTokens(fio, [w]);
  assert.ok(!got.some((c) => c.token === s));
  // The datasync runs and finishes underneath, but stays held. Wait for that (bounded),
  // not for a fixed time: an fdatasync on a loaded machine can take far longer than 20 ms.
  for (const deadline = Date.now() + 10_000; hold.held === 0 && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 5));
  const more: IoCompletion[] = [];
  fio.pollCompletions(more);
  assert.deepEqual(more, []);
  assert.equal(hold.held, 1);
  assert.equal(fio.pendingCount(), 1);
  let woke = false;
  const waiting = fio.waitForCompletions().then(() => { woke = true; });
  await new Promise((r) => setTimeout(r, 10));
  assert.equal(woke, false, 'waitForCompletions blocks while only held completions exist');
  hold.release();
  await waiting;
  fio.pollCompletions(more);
  assert.deepEqual(more, [{ token: s, result: 0 }]);
  fio.close();
});

test('delay hands a completion out no sooner than asked', async () => {
  const { fio, fd } = setup();
  fio.delay(40, { op: 'write' });
  const start = performance.now();
  const t = fio.submitWrite(fd, b('x'), 0);
  await waitForTokens(fio, [t]);
  assert.ok(performance.now() - start >= 39);
  fio.close();
});

test("reorder 'acrossFds' interleaves fds but keeps each fd's own order; 'reverse' reverses the batch", async () => {
  const inner = new SyncStorageIo();
  const fio = new FaultInjectingStorageIo(inner, { reorder: 'acrossFds', seed: 3 });
  const fds = [0, 1, 2].map((i) => {
    const p = join(dir, `ro-${i}.bin`);
    fs.writeFileSync(p, '');
    return fio.registerFd(fs.openSync(p, 'r+'));
  });
  const perFd = new Map<number, number[]>();
  const owner = new Map<number, number>();
  for (let i = 0; i < 30; i++) {
    const f = fds[i % 3]!;
    const t = fio.submitAppend(f, b('x'));
    perFd.set(f, [...(perFd.get(f) ?? []), t]);
    owner.set(t, f);
  }
  const out: IoCompletion[] = [];
  fio.pollCompletions(out);
  assert.equal(out.length, 30);
  const order = out.map((c) => c.token);
  assert.notDeepEqual(order, [...order].sort((a, c) => a - c), 'fds interleave differently from submission');
  for (const f of fds) assert.deepEqual(order.filter((t) => owner.get(t) === f), perFd.get(f));

  fio.setReorder('reverse');
  const a = fio.submitAppend(fds[0]!, b('1'));
  const c = fio.submitAppend(fds[0]!, b('2'));
  const out2: IoCompletion[] = [];
  fio.pollCompletions(out2);
  assert.deepEqual(out2.map((x) => x.token), [c, a]);
  fio.close();
});

test('heal releases holds and forgets faults and failed fds', async () => {
  const { fio, fd } = setup();
  fio.inject({ op: 'write', times: Infinity, errno: 'EIO' });
  const t = fio.submitWrite(fd, b('x'), 0);
  fio.hold();
  const s = fio.submitDatasync(fd); // cancelled (fd failed), and held
  fio.heal();
  const got = results(await waitForTokens(fio, [t, s]));
  assert.equal(got.get(t), -constants.errno.EIO);
  assert.equal(got.get(s), -constants.errno.ECANCELED);
  const ok = fio.submitWrite(fd, b('y'), 0);
  assert.equal(results(await waitForTokens(fio, [ok])).get(ok), 1);
  fio.close();
});

test('bad fault specifications fail with INVALID_ARGUMENT; unknown fds with BAD_FD', () => {
  const { fio } = setup();
  assert.throws(() => fio.inject({ errno: 'EWHAT' as 'EIO' }), (e) => e instanceof PerCoreWalError && e.code === 'INVALID_ARGUMENT');
  assert.throws(() => fio.inject({ shortWrite: -1 }), (e) => e instanceof PerCoreWalError && e.code === 'INVALID_ARGUMENT');
  assert.throws(() => fio.submitDatasync(99 as IoFd), (e) => (e as { code?: string }).code === 'BAD_FD');
  fio.close();
});
