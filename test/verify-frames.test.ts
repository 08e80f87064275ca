import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { crc32cJs, RECORD_HEADER_SIZE } from '../src/index.js';
import { verifyBackend, verifyFrames, verifyFramesJs } from '../src/record/verify.js';
import { runModule } from './helpers/run-module.js';

const root = join(fileURLToPath(import.meta.url), '..', '..', '..');
const addonBuilt = existsSync(join(root, 'build', 'Release', 'corewal_frames.node'));

/** How a frame of a generated run is spoilt (or not). */
type Flaw = 'none' | 'crc' | 'payload' | 'zero' | 'tooLong' | 'huge';
const flawArb = fc.constantFrom<Flaw>('none', 'none', 'none', 'none', 'none', 'none', 'crc', 'payload', 'zero', 'tooLong', 'huge');
const MAX = 2000;
const frameArb = fc.record({
  len: fc.oneof(fc.integer({ min: 1, max: 300 }), fc.integer({ min: 700, max: 30_000 }), fc.constantFrom(MAX - 1, MAX, MAX + 1)),
  flaw: flawArb,
  salt: fc.integer({ min: 0, max: 255 }),
});

interface Run { buf: Buffer; dv: DataView; from: number; to: number; expected: number }

/**
 * Lays out frames from an odd offset, seals the good ones, spoils the flawed ones, and
 * cuts the range at `cut` bytes before the end; `expected` is where the good prefix ends,
 * worked out from the construction rather than by any verifier.
 */
function build(frames: { len: number; flaw: Flaw; salt: number }[], lead: number, cut: number): Run {
  const total = frames.reduce((a, f) => a + RECORD_HEADER_SIZE + (f.flaw === 'zero' ? 0 : f.len), 0);
  const buf = Buffer.alloc(lead + total + 16, 0x5a);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const to = Math.max(lead, lead + total - cut);
  let at = lead, expected = -1;
  for (const f of frames) {
    const len = f.flaw === 'zero' ? 0 : f.len;
    for (let j = 0; j < len; j++) buf[at + RECORD_HEADER_SIZE + j] = (f.salt + j * 31) & 0xff;
    const crc = crc32cJs(buf, at + RECORD_HEADER_SIZE, at + RECORD_HEADER_SIZE + len);
    dv.setUint32(at, len, true);
    dv.setUint32(at + 4, crc, true);
    if (f.flaw === 'crc') dv.setUint32(at + 4, (crc ^ (1 << (f.salt & 31))) >>> 0, true);
    if (f.flaw === 'payload') buf[at + RECORD_HEADER_SIZE + (f.salt % len)] ^= 1 << (f.salt & 7);
    // Longer than the maximum: a length the run's bytes do hold, or a huge one.
    if (f.flaw === 'tooLong') dv.setUint32(at, MAX + 1 + f.salt, true);
    if (f.flaw === 'huge') dv.setUint32(at, 0xffffffff - f.salt, true);
    const good = f.flaw === 'none' && f.len <= MAX;
    const end = at + RECORD_HEADER_SIZE + len;
    if (expected < 0 && (!good || end > to)) expected = at;
    at = end;
  }
  return { buf, dv, from: lead, to, expected: expected < 0 ? at : expected };
}

test('verifyFrames loads natively wherever the addon was built', () => {
  if (!addonBuilt) {
    assert.equal(verifyBackend.native, false);
    return;
  }
  assert.equal(verifyBackend.native, true, `corewal_frames.node is built but verifyFrames did not load: ${verifyBackend.reason}`);
});

test('property: verifyFrames (native where built) and verifyFramesJs both stop at the first bad, zero, too long or cut-off frame', () => {
  fc.assert(fc.property(
    fc.array(frameArb, { minLength: 0, maxLength: 40 }), fc.integer({ min: 0, max: 13 }), fc.nat({ max: 400 }),
    (frames, lead, cut) => {
      const r = build(frames, lead, cut);
      assert.equal(verifyFramesJs(r.buf, r.dv, r.from, r.to, MAX), r.expected, 'TypeScript');
      assert.equal(verifyFrames(r.buf, r.dv, r.from, r.to, MAX), r.expected, 'native');
    }), { numRuns: 1500 });
});

test('verifyFrames: a maximum at or past 2^32 admits any length; an empty or header-short range verifies nothing; bad arguments throw', () => {
  const r = build([{ len: 100, flaw: 'none', salt: 1 }, { len: 5000, flaw: 'none', salt: 2 }], 3, 0);
  for (const max of [2 ** 32, 2 ** 40, Number.MAX_SAFE_INTEGER]) {
    assert.equal(verifyFrames(r.buf, r.dv, r.from, r.to, max), r.to);
    assert.equal(verifyFramesJs(r.buf, r.dv, r.from, r.to, max), r.to);
  }
  assert.equal(verifyFrames(r.buf, r.dv, r.from, r.from + 100, 5000), r.from, 'the header only');
  assert.equal(verifyFrames(r.buf, r.dv, r.from, r.from + 100 + RECORD_HEADER_SIZE, 99), r.from, 'maximum one below the length');
  assert.equal(verifyFrames(r.buf, r.dv, r.from, r.from + 100 + RECORD_HEADER_SIZE, 100), r.from + 108, 'maximum the length');
  for (const to of [r.from, r.from + 7]) assert.equal(verifyFrames(r.buf, r.dv, r.from, to, MAX), r.from);
  if (verifyBackend.native) {
    // The native call checks its range like sealFrames does, rather than reading outside the buffer.
    assert.throws(() => verifyFrames(r.buf, r.dv, 0, r.buf.length + 1, MAX), RangeError);
    assert.throws(() => verifyFrames(r.buf, r.dv, 10, 9, MAX), RangeError);
  }
});

test('without the addon verifyFrames is the TypeScript one, with the same results', () => {
  const url = (p: string): string => new URL(p, import.meta.url).href;
  // Deterministic runs the child rebuilds: lengths and flaws from a small LCG.
  const script = `
    const { verifyBackend, verifyFrames } = await import(${JSON.stringify(url('../src/record/verify.js'))});
    const { crc32cJs } = await import(${JSON.stringify(url('../src/index.js'))});
    let seed = 12345;
    const rnd = (n) => { seed = (seed * 1103515245 + 12345) >>> 0; return seed % n; };
    const out = [];
    for (let round = 0; round < 300; round++) {
      const buf = Buffer.alloc(64 * 1024);
      const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
      let at = rnd(9);
      const from = at;
      const n = rnd(30);
      for (let i = 0; i < n && at + 8 + 3000 < buf.length; i++) {
        const len = 1 + rnd(rnd(10) === 0 ? 2500 : 200);
        for (let j = 0; j < len; j++) buf[at + 8 + j] = rnd(256);
        dv.setUint32(at, len, true);
        dv.setUint32(at + 4, crc32cJs(buf, at + 8, at + 8 + len), true);
        const flaw = rnd(60);
        if (flaw === 0) buf[at + 8 + rnd(len)] ^= 1 << rnd(8);
        if (flaw === 1) dv.setUint32(at, 0, true);
        if (flaw === 2) dv.setUint32(at, 2001, true);
        at += 8 + len;
      }
      const to = Math.max(from, at - rnd(20));
      out.push([verifyFrames(buf, dv, from, to, 2000), from, to]);
    }
    console.log(JSON.stringify({ native: verifyBackend.native, out }));
  `;
  const run = (env: NodeJS.ProcessEnv): { native: boolean; out: [number, number, number][] } => {
    const r = runModule(script, { env: { ...process.env, ...env } });
    assert.equal(r.status, 0, r.stderr);
    return JSON.parse(r.stdout) as { native: boolean; out: [number, number, number][] };
  };
  const off = run({ COREWAL_FRAMES_ADDON: 'off' });
  const on = run({});
  assert.equal(off.native, false);
  assert.equal(on.native, addonBuilt);
  assert.deepEqual(off.out, on.out);
  // The runs stop at flaws and cuts well before their ends, and others only at the cut.
  assert.ok(off.out.filter(([r, from, to]) => r > from && r < to - 3000).length > 20);
  assert.ok(off.out.filter(([r, from, to]) => r > from && r >= to - 3000).length > 20);
});
