import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CoreWalWriter, scanSegment } from '../../src/index.js';
import { Rng, SimDisk, SimPowerLoss, systemError } from '../../src/testing/index.js';

const b = (s: string): Buffer => Buffer.from(s);

function write(d: SimDisk, fd: number, s: string, at: number): void {
  d.writeSync(fd, b(s), 0, s.length, at);
}

describe('SimDisk', () => {
  test('synced bytes survive every crash; unsynced ones survive as a prefix, perhaps torn', () => {
    const seen = new Set<string>();
    for (let seed = 0; seed < 300; seed++) {
      const d = new SimDisk();
      d.mkdirSync('/w');
      const fd = d.openSync('/w/f', 'w+');
      d.fsyncDir('/w');
      write(d, fd, 'AAAA', 0);
      d.fdatasyncSync(fd);
      write(d, fd, 'BBBB', 4);
      write(d, fd, 'CCCC', 8);
      const c = d.crash(seed, { reorder: 0 }).fileContents('/w/f').toString();
      assert.ok(c.startsWith('AAAA'), `seed ${seed}: synced prefix lost: ${JSON.stringify(c)}`);
      assert.match(c, /^AAAA(B{0,4}\0*|BBBBC{0,4}\0*)$/, `seed ${seed}: ${JSON.stringify(c)}`);
      assert.ok(c.length <= 12);
      seen.add(c);
    }
    // The crash really explores: nothing, torn, whole, and everything.
    for (const s of ['AAAA', 'AAAABBBB', 'AAAABBBBCCCC']) assert.ok(seen.has(s), `never produced ${s}: ${[...seen].join(',')}`);
    assert.ok([...seen].some((s) => /^AAAAB{1,3}$/.test(s)), 'never tore a write');
  });

  test('out-of-order persistence keeps later writes past a hole', () => {
    let found = false;
    for (let seed = 0; seed < 400 && !found; seed++) {
      const d = new SimDisk();
      const fd = d.openSync('/f', 'w+');
      d.fsyncDir('/');
      write(d, fd, 'AAAA', 0);
      write(d, fd, 'BBBB', 4);
      const c = d.crash(seed, { reorder: 1, tear: 0 }).fileContents('/f');
      if (c.length === 8 && c.subarray(0, 4).equals(Buffer.alloc(4)) && c.toString('latin1', 4) === 'BBBB') found = true;
    }
    assert.ok(found, 'no crash persisted the second write without the first');
  });

  test('a creation or rename is durable only after fsyncDir', () => {
    let lostCreate = 0, lostRename = 0;
    for (let seed = 0; seed < 100; seed++) {
      const d = new SimDisk();
      d.mkdirSync('/w');
      const fd = d.openSync('/w/tmp', 'w');
      write(d, fd, 'data', 0);
      d.fsyncSync(fd);
      if (!d.crash(seed).existsSync('/w/tmp')) lostCreate++;
      d.fsyncDir('/w');
      assert.equal(d.crash(seed).fileContents('/w/tmp').toString(), 'data');
      d.renameSync('/w/tmp', '/w/final');
      const c = d.crash(seed);
      // Atomic: one name or the other, never neither, never both.
      assert.equal(Number(c.existsSync('/w/tmp')) + Number(c.existsSync('/w/final')), 1);
      if (c.existsSync('/w/tmp')) lostRename++;
      d.fsyncDir('/w');
      const c2 = d.crash(seed);
      assert.equal(c2.existsSync('/w/tmp'), false);
      assert.equal(c2.fileContents('/w/final').toString(), 'data');
    }
    assert.ok(lostCreate > 10 && lostRename > 10, `create lost ${lostCreate}, rename lost ${lostRename}`);
  });

  test('the same seed gives the same crash', () => {
    const d = new SimDisk();
    const fd = d.openSync('/f', 'w+');
    const rng = new Rng(5);
    for (let i = 0; i < 20; i++) d.writeSync(fd, rng.bytes(37), 0, 37, i * 37);
    assert.deepEqual(d.crash(99).fileContents('/f'), d.crash(99).fileContents('/f'));
    const distinct = new Set(Array.from({ length: 20 }, (_, s) => d.crash(s).existsSync('/f') ? d.crash(s).fileContents('/f').toString('hex') : 'none'));
    assert.ok(distinct.size > 5);
  });

  test('injected faults look like Node SystemErrors and fire on the chosen call only', () => {
    const d = new SimDisk();
    const fd = d.openSync('/f', 'w+');
    const h = d.injectFault({ op: 'writeSync', nth: 2, code: 'ENOSPC' });
    write(d, fd, 'one', 0);
    const err = (() => { try { write(d, fd, 'two', 3); } catch (e) { return e; } return null; })() as NodeJS.ErrnoException;
    assert.equal(err.code, 'ENOSPC');
    assert.equal(err.errno, -28);
    assert.equal(err.syscall, 'write');
    write(d, fd, 'three', 3);
    assert.equal(h.fired, 1);
    assert.equal(d.fileContents('/f').toString(), 'onethree');
    assert.deepEqual(Object.keys(systemError('EIO', 'fsync')).sort(), ['code', 'errno', 'syscall']);
  });

  test('a failed fdatasync forgets the dirty data: a later successful one does not make it durable', () => {
    const d = new SimDisk();
    const fd = d.openSync('/f', 'w+');
    d.fsyncDir('/');
    write(d, fd, 'AAAA', 0);
    d.fdatasyncSync(fd);
    write(d, fd, 'BBBB', 4);
    d.injectFault({ op: 'fdatasyncSync', code: 'EIO' });
    assert.throws(() => d.fdatasyncSync(fd), { code: 'EIO' });
    d.fdatasyncSync(fd); // "succeeds", as on Linux
    assert.equal(d.fileContents('/f').toString(), 'AAAABBBB'); // the page cache still shows it
    assert.equal(d.crash(1, { tear: 0, reorder: 0 }).fileContents('/f').toString(), 'AAAA');
  });

  test('capacity: a write that does not fit is short, then ENOSPC', () => {
    const d = new SimDisk({ capacity: 10 });
    const fd = d.openSync('/f', 'w+');
    assert.equal(d.writeSync(fd, b('0123456789ab'), 0, 12, 0), 10);
    assert.throws(() => d.writeSync(fd, b('x'), 0, 1, 10), { code: 'ENOSPC', errno: -28 });
    d.ftruncateSync(fd, 4);
    assert.equal(d.writeSync(fd, b('x'), 0, 1, 4), 1);
  });

  test('unlink and rm: gone now, back after a crash unless the directory was synced', () => {
    const d = new SimDisk();
    d.mkdirSync('/w');
    d.closeSync(d.openSync('/w/a', 'w'));
    d.fsyncDir('/w');
    d.unlinkSync('/w/a');
    assert.equal(d.existsSync('/w/a'), false);
    assert.deepEqual(d.readdirSync('/w'), []);
    let back = 0;
    for (let s = 0; s < 200; s++) if (d.crash(s).existsSync('/w/a')) back++;
    assert.ok(back > 10 && back < 150, `came back ${back} times of 200`);
    d.fsyncDir('/w');
    assert.equal(d.crash(3).existsSync('/w/a'), false);
    assert.throws(() => d.closeSync(12345), { code: 'EBADF' });
  });
});

test('the SimDisk example of its TSDoc: a synced record survives every crash, an unsynced one is whole or absent', () => {
  const disk = new SimDisk();
  disk.mkdirSync('/wal', { recursive: true });
  const w = CoreWalWriter.create(0, '/wal/wal-0.log', { fs: disk, preallocate: 0 });
  w.appendPut(Buffer.from('k'), Buffer.from('v'));
  w.sync();
  w.appendPut(Buffer.from('k2'), Buffer.from('v2'));
  w.flush();
  const counts = new Set<number>();
  for (let seed = 0; seed < 100; seed++) {
    const scan = scanSegment(0, '/wal/wal-0.log', { fs: disk.crash(seed) });
    assert.ok(scan.entries === 1 || scan.entries === 2);
    assert.notEqual(scan.tail, 'damaged');
    counts.add(scan.entries);
  }
  assert.deepEqual([...counts].sort(), [1, 2]);
});

test('powerCut: the chosen call and every later one throw SimPowerLoss; afterPowerCut is the disk at that moment', () => {
  const d = new SimDisk();
  const fd = d.openSync('/f', 'w+');
  d.fsyncDir('/');
  write(d, fd, 'AAAA', 0);
  d.fdatasyncSync(fd);
  d.powerCut(1, 3, { tear: 0, reorder: 0 });
  write(d, fd, 'BBBB', 4); // the one call still allowed
  assert.throws(() => d.fdatasyncSync(fd), (e: unknown) => e instanceof SimPowerLoss && e.code === 'SIM_POWER_LOSS');
  assert.throws(() => d.existsSync('/f'), SimPowerLoss);
  const after = d.afterPowerCut;
  assert.ok(after !== null);
  assert.match(after.fileContents('/f').toString(), /^AAAA(BBBB)?$/);
  assert.equal(after.existsSync('/f'), true); // the new disk has power
});
