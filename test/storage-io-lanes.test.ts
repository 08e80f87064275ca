// ThreadPoolStorageIo's sticky lanes (native/pool-lane.c): each fd's jobs go to a libuv pool
// thread that lingers for the next one, handed over without libuv's queue locks. The
// StorageIo contract with lanes on (the default) and off is storage-io-thread-pool.test.ts;
// this file is what only lanes do: reuse a thread, give it back, and leave nothing behind.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { constants } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { PerCoreWalError, ThreadPoolStorageIo } from '../src/index.js';
import { nativeAddon } from '../src/util/native.js';
import { waitForTokens } from './helpers/storage-io-suite.js';
import { runModule } from './helpers/run-module.js';
import { b, tempDir } from './helpers/tmp.js';

const dir = tempDir();
const lanesHere = (() => {
  const sio = new ThreadPoolStorageIo();
  try { return sio.info().lanes; } finally { sio.close(); }
})();
const skip = lanesHere ? false : 'lanes need the native addon on Linux';
const index = fileURLToPath(new URL('../src/index.js', import.meta.url));

test('consecutive rounds on an fd are handed to the lingering thread, not queued to libuv each time', { skip }, async () => {
  const sio = new ThreadPoolStorageIo({ lingerMs: 200 });
  const p = join(dir, 'rounds.bin');
  const fd = sio.registerFd(fs.openSync(p, 'w+'));
  const rounds = 200;
  for (let i = 0; i < rounds; i++) {
    const w = sio.submitAppend(fd, b(`r${String(i).padStart(4, '0')};`));
    const s = sio.submitDatasync(fd);
    const done = await waitForTokens(sio, [w, s]);
    assert.deepEqual(done.map((c) => c.result).sort((x, y) => x - y), [0, 6]);
  }
  const info = sio.info();
  assert.equal(info.laneJobs, rounds, 'every round ran on the lane');
  // A lane that gave its thread back after every job would need one pool job per round.
  assert.ok(info.laneThreads <= rounds / 10, `${info.laneThreads} pool jobs for ${rounds} rounds`);
  await sio.whenIdle();
  sio.close();
  const expected = Array.from({ length: rounds }, (_, i) => `r${String(i).padStart(4, '0')};`).join('');
  assert.equal(fs.readFileSync(p, 'utf8'), expected);
});

test('a lane gives its thread back after lingerMs idle, and takes a new one for the next job', { skip }, async () => {
  const sio = new ThreadPoolStorageIo({ lingerMs: 1 });
  const fd = sio.registerFd(fs.openSync(join(dir, 'idle.bin'), 'w+'));
  for (let i = 0; i < 3; i++) {
    await waitForTokens(sio, [sio.submitAppend(fd, b('x')), sio.submitDatasync(fd)]);
    await new Promise((r) => setTimeout(r, 30));
  }
  const info = sio.info();
  sio.close();
  assert.equal(info.laneJobs, 3);
  assert.equal(info.laneThreads, 3, 'each round after a 30 ms pause found no thread waiting');
});

test('hand-overs racing the thread\'s give-back lose no job (lingers of microseconds, thousands of rounds)', { skip }, async () => {
  // With a linger this short the thread is often giving itself back just as the loop hands it
  // the next job: the one race a lane must get right (a job left in the slot would never
  // complete, and waitForTokens would time out).
  let seed = 7;
  const rnd = (): number => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
  for (const lingerMs of [0.001, 0.005, 0.02]) {
    const sio = new ThreadPoolStorageIo({ lingerMs });
    const p = join(dir, `race-${lingerMs}.bin`);
    const fd = sio.registerFd(fs.openSync(p, 'w+'));
    let expected = 0;
    for (let i = 0; i < 1500; i++) {
      const tokens = [sio.submitAppend(fd, Buffer.alloc(1 + (i % 64), i & 0xff))];
      expected += 1 + (i % 64);
      if (rnd() < 0.3) tokens.push(sio.submitDatasync(fd));
      const done = await waitForTokens(sio, tokens, 5_000);
      assert.ok(done.every((c) => c.result >= 0));
      // Sometimes come back at once, sometimes after a turn or a short pause.
      const r = rnd();
      if (r < 0.3) await new Promise((res) => setImmediate(res));
      else if (r < 0.35) await new Promise((res) => setTimeout(res, 1));
    }
    const info = sio.info();
    sio.close();
    assert.ok(info.laneJobs >= 1500, `${info.laneJobs} lane jobs`);
    assert.equal(fs.statSync(p).size, expected);
  }
});

test('the hand-over protocol under stress: no job is ever lost, whichever step of its give-back the thread is at', { skip }, () => {
  // In real use a job follows a result by tens of microseconds, so the windows where the loop
  // hands over while the thread parks or gives itself back are seldom hit. laneStress drives
  // the same code with no I/O and pauses of a few microseconds, hundreds of thousands of
  // times: a job left in the slot with no thread to run it shows up as `lost`.
  const stress = nativeAddon().binding!.laneStress!;
  let wakes = 0;
  for (const [lingerUs, pauseUs] of [[0, 0], [1, 3], [2, 6], [5, 12]] as const) {
    const r = stress(40_000, lingerUs, pauseUs, lingerUs + 1);
    assert.equal(r.lost, 0, `linger ${lingerUs} us, pauses up to ${pauseUs} us: ${JSON.stringify(r)}`);
    assert.ok(r.threadsExited, 'every thread gave itself back at close');
    // Both ways a job reaches a thread were taken many times: a new thread (every job, less
    // those a thread already giving itself back took), and a parked one woken. How often
    // depends on the machine's load; these floors hold on a machine with every core busy.
    if (lingerUs > 0) wakes += r.wakes;
    else assert.ok(r.threads > 1000 && r.threads <= r.handOvers, JSON.stringify(r));
  }
  assert.ok(wakes > 300, `${wakes} hand-overs to a parked thread`);
});

test('a job a lane refuses runs the ordinary way (writes, datasyncs, joined)', { skip }, async () => {
  const sio = new ThreadPoolStorageIo();
  const p = join(dir, 'refused.bin');
  const fd = sio.registerFd(fs.openSync(p, 'w+'));
  await waitForTokens(sio, [sio.submitAppend(fd, b('zero;')), sio.submitDatasync(fd)]);
  // Close the fd's lane behind the backend's back: laneSubmit now throws, as it does when
  // libuv refuses a new pool job.
  const internals = sio as unknown as { fds: { lanes: { handle: Parameters<NonNullable<typeof binding.laneClose>>[0] }[] }[] };
  const binding = nativeAddon().binding!;
  assert.equal(internals.fds[fd]!.lanes.length, 1);
  binding.laneClose!(internals.fds[fd]!.lanes[0]!.handle);
  const before = sio.info().laneJobs;
  const tokens = [sio.submitAppend(fd, b('one;')), sio.submitAppend(fd, b('two;')), sio.submitDatasync(fd)];
  sio.flush();
  tokens.push(sio.submitAppend(fd, b('three;')));
  tokens.push(sio.submitDatasync(fd));
  const done = new Map((await waitForTokens(sio, tokens)).map((c) => [c.token, c.result]));
  const after = sio.info().laneJobs;
  sio.close();
  assert.deepEqual(tokens.map((t) => done.get(t)), [4, 4, 0, 6, 0]);
  assert.equal(fs.readFileSync(p, 'utf8'), 'zero;one;two;three;');
  // The refused lane is never busy, so it is the one every job is offered, and refuses.
  assert.equal(after - before, 0);
});

test('lingerMs 0 turns lanes off; a bad lingerMs is refused', async () => {
  const sio = new ThreadPoolStorageIo({ lingerMs: 0 });
  const fd = sio.registerFd(fs.openSync(join(dir, 'off.bin'), 'w+'));
  await waitForTokens(sio, [sio.submitAppend(fd, b('abc')), sio.submitDatasync(fd)]);
  assert.equal(sio.info().lanes, false);
  assert.equal(sio.info().laneJobs, 0);
  sio.close();
  for (const bad of [-1, 1001, Number.NaN, '2' as unknown as number]) {
    assert.throws(() => new ThreadPoolStorageIo({ lingerMs: bad }), (e: unknown) => e instanceof PerCoreWalError && e.code === 'INVALID_ARGUMENT' && /lingerMs/.test(e.message));
  }
});

test('a lane runs write-only and datasync-only jobs, and reports their errnos', { skip }, async () => {
  const sio = new ThreadPoolStorageIo();
  const p = join(dir, 'kinds.bin');
  const fd = sio.registerFd(fs.openSync(p, 'w+'));
  const [w] = await waitForTokens(sio, [sio.submitAppend(fd, b('alone'))]);
  assert.equal(w!.result, 5);
  const [s] = await waitForTokens(sio, [sio.submitDatasync(fd)]);
  assert.equal(s!.result, 0);
  assert.equal(sio.info().laneJobs, 2, 'a write with nothing behind it, then a datasync alone');
  // A write at 32 TiB fails in the kernel (EFBIG on ext4, 16 TiB files at most).
  const far = sio.submitWrite(fd, b('far'), 2 ** 45);
  const after = sio.submitAppend(fd, b('after'));
  const res = new Map((await waitForTokens(sio, [far, after])).map((c) => [c.token, c.result]));
  sio.close();
  assert.equal(fs.readFileSync(p, 'utf8'), 'alone');
  if (res.get(far)! >= 0) return;  // a filesystem that takes it: nothing more to see
  assert.equal(res.get(far), -constants.errno.EFBIG);
  assert.equal(res.get(after), -constants.errno.ECANCELED);
});

test('a datasync that fails on a lane is reported with its errno and cancels what follows', { skip }, async () => {
  // fdatasync on a FIFO fails with EINVAL: a real kernel error, not an injected one.
  const fifo = join(dir, 'fifo');
  execFileSync('mkfifo', [fifo]);
  const sio = new ThreadPoolStorageIo();
  const fd = sio.registerFd(fs.openSync(fifo, fs.constants.O_RDWR));
  const [s] = await waitForTokens(sio, [sio.submitDatasync(fd)]);
  const [next] = await waitForTokens(sio, [sio.submitDatasync(fd)]);
  const laneJobs = sio.info().laneJobs;
  sio.close();
  assert.equal(laneJobs, 1);
  assert.equal(s!.result, -constants.errno.EINVAL);
  assert.equal(next!.result, -constants.errno.ECANCELED, 'nothing runs on the fd after a failure');
});

test('work that overlaps a lane\'s job runs on another of the fd\'s lanes or, past four, the ordinary way: in order', { skip }, async () => {
  const sio = new ThreadPoolStorageIo();
  const p = join(dir, 'overlap.bin');
  const fd = sio.registerFd(fs.openSync(p, 'w+'));
  const tokens: number[] = [];
  // A datasync alone takes the lane; the writes after it may run meanwhile, on the pool.
  for (let i = 0; i < 50; i++) {
    tokens.push(sio.submitDatasync(fd));
    sio.flush();
    tokens.push(sio.submitAppend(fd, b(`${i};`)));
    sio.flush();
  }
  tokens.push(sio.submitDatasync(fd));
  const done = await waitForTokens(sio, tokens);
  assert.ok(done.every((c) => c.result >= 0), JSON.stringify(done.filter((c) => c.result < 0)));
  const laneJobs = sio.info().laneJobs;
  sio.close();
  // Every write waits for the one before it, datasyncs for the writes before them: at least
  // the 50 writes and one datasync of each round overlap on lanes.
  assert.ok(laneJobs >= 50 && laneJobs <= tokens.length, `${laneJobs} of ${tokens.length} operations on lanes`);
  assert.equal(fs.readFileSync(p, 'utf8'), Array.from({ length: 50 }, (_, i) => `${i};`).join(''));
});

/** Runs `code` (an ES module importing corewal as `index`) in a fresh node; its exit code and output. */
function child(code: string, env: NodeJS.ProcessEnv = process.env): { status: number | null; signal: string | null; out: string; ms: number } {
  const t = performance.now();
  const r = runModule(`import * as cw from ${JSON.stringify(index)};\n${code}`, { env });
  return { status: r.status, signal: r.signal, out: `${r.stdout}${r.stderr}`, ms: performance.now() - t };
}

test('an idle lane does not keep the process alive, closed or not', { skip }, () => {
  const file = join(dir, 'alive.bin');
  const r = child(`
    import * as fs from 'node:fs';
    const sio = new cw.ThreadPoolStorageIo({ lingerMs: 1000 });
    const fd = sio.registerFd(fs.openSync(${JSON.stringify(file)}, 'w+'));
    sio.submitAppend(fd, Buffer.from('kept'));
    sio.submitDatasync(fd);
    sio.flush();
    const out = [];
    while (out.length < 2) { await sio.waitForCompletions(); sio.pollCompletions(out); }
    console.log('done', sio.info().laneJobs);
    // Not closed: the lane's thread lingers up to 1 s, then the process ends by itself.
  `);
  assert.equal(r.status, 0, r.out);
  assert.match(r.out, /done 1/);
  assert.ok(r.ms < 10_000, `exited after ${r.ms} ms`);
  assert.equal(fs.readFileSync(file, 'utf8'), 'kept');
});

test('a worker thread that is terminated while its lanes run jobs exits cleanly', { skip }, () => {
  const file = join(dir, 'worker.bin');
  const script = join(dir, 'lane-worker.mjs');
  fs.writeFileSync(script, `
    import * as fs from 'node:fs';
    import { parentPort } from 'node:worker_threads';
    import * as cw from ${JSON.stringify(index)};
    const sio = new cw.ThreadPoolStorageIo({ lingerMs: 500 });
    const fd = sio.registerFd(fs.openSync(${JSON.stringify(file)}, 'w+'));
    const out = [];
    for (let i = 0; ; i++) {
      sio.submitAppend(fd, Buffer.alloc(4096, i));
      sio.submitDatasync(fd);
      sio.flush();
      out.length = 0;
      while (out.length < 2) { await sio.waitForCompletions(); sio.pollCompletions(out); }
      if (i === 20) parentPort.postMessage('running');
    }
  `);
  // Node aborts a worker whose event loop still has an open handle at teardown: the lane's
  // async handle must be closed then (by its cleanup hook, or its finalizer), whether its
  // thread is mid-job or lingering.
  const r = child(`
    import { Worker } from 'node:worker_threads';
    for (let round = 0; round < 5; round++) {
      const w = new Worker(${JSON.stringify(script)}, { execArgv: [] });
      await new Promise((res, rej) => { w.once('message', res); w.once('error', rej); });
      await w.terminate();
    }
    console.log('survived');
  `);
  assert.equal(r.signal, null, r.out);
  assert.equal(r.status, 0, r.out);
  assert.match(r.out, /survived/);
});

/** 50 write + datasync rounds on lanes lingering 1 s, with `poolSize` pool threads, a pause after each. */
function roundsOnPool(file: string, poolSize: number): { laneJobs: number; laneThreads: number; laneWakes: number; otherWorkMs: number } {
  const r = child(`
    import * as fs from 'node:fs';
    const sio = new cw.ThreadPoolStorageIo({ lingerMs: 1000 });
    const fd = sio.registerFd(fs.openSync(${JSON.stringify(file)}, 'w+'));
    const out = [];
    for (let i = 0; i < 50; i++) {
      sio.submitAppend(fd, Buffer.from('r;'));
      sio.submitDatasync(fd);
      sio.flush();
      out.length = 0;
      while (out.length < 2) { await sio.waitForCompletions(); sio.pollCompletions(out); }
      // Long enough for the thread to have parked or given itself back before the next round.
      await new Promise((r) => setTimeout(r, 2));
    }
    // Other pool work right after: a lane lingering on the only thread would hold it up for 1 s.
    const t = performance.now();
    await fs.promises.readFile(${JSON.stringify(file)});
    const otherWorkMs = performance.now() - t;
    const { laneJobs, laneThreads, laneWakes } = sio.info();
    sio.close();
    console.log(JSON.stringify({ laneJobs, laneThreads, laneWakes, otherWorkMs }));
  `, { ...process.env, UV_THREADPOOL_SIZE: String(poolSize) });
  assert.equal(r.status, 0, r.out);
  assert.equal(fs.readFileSync(file, 'utf8'), 'r;'.repeat(50));
  return JSON.parse(r.out.trim().split('\n').pop()!);
}

test('with a pool of one thread (UV_THREADPOOL_SIZE=1) no lane lingers on it', { skip }, () => {
  // The control: with four threads, a lane parks after each round and the next wakes it.
  const four = roundsOnPool(join(dir, 'four-threads.bin'), 4);
  assert.equal(four.laneJobs, 50);
  assert.ok(four.laneWakes > 25, JSON.stringify(four));
  const one = roundsOnPool(join(dir, 'one-thread.bin'), 1);
  assert.equal(one.laneJobs, 50);
  // Never parked, so never woken: every round either found the thread still finishing the
  // last one, or queued a new pool job.
  assert.equal(one.laneWakes, 0, JSON.stringify(one));
  assert.ok(one.laneThreads >= 1, JSON.stringify(one));
  assert.ok(one.otherWorkMs < 500, `a readFile behind the lane waited ${one.otherWorkMs} ms`);
});
