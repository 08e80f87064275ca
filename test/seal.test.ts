import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { crc32cJs, RECORD_HEADER_SIZE } from '../src/index.js';
import { sealBackend, sealFrames } from '../src/record/seal.js';
import { tempDir } from './helpers/tmp.js';
import { runModule } from './helpers/run-module.js';

const root = join(fileURLToPath(import.meta.url), '..', '..', '..');
const addonBuilt = existsSync(join(root, 'build', 'Release', 'corewal_frames.node'));

/** `n` frames of random payload lengths from `at` on, CRC fields filled with junk; returns their end. */
function frames(buf: Buffer, at: number, lengths: number[]): number {
  for (const len of lengths) {
    buf.writeUInt32LE(len, at);
    buf.writeUInt32LE(0xdeadbeef, at + 4);
    randomBytes(len).copy(buf, at + RECORD_HEADER_SIZE);
    at += RECORD_HEADER_SIZE + len;
  }
  return at;
}

function checkSealed(buf: Buffer, from: number, to: number): number {
  let n = 0;
  for (let at = from; at < to; n++) {
    const len = buf.readUInt32LE(at);
    assert.equal(buf.readUInt32LE(at + 4), crc32cJs(buf, at + RECORD_HEADER_SIZE, at + RECORD_HEADER_SIZE + len), `frame ${n} at ${at}`);
    at += RECORD_HEADER_SIZE + len;
  }
  return n;
}

test('the native sealer loads wherever the addon was built, and uses the CPU CRC instruction on x64', () => {
  if (!addonBuilt) {
    assert.equal(sealBackend.native, false);
    assert.match(sealBackend.reason ?? '', /not built/);
    return;
  }
  assert.equal(sealBackend.native, true, `corewal_frames.node is built but did not load: ${sealBackend.reason}`);
  if (process.arch === 'x64') assert.equal(sealBackend.hardware, true);
});

test('sealFrames stores every frame\'s CRC-32C: runs of random lengths, at odd offsets, payloads 0 B to 68 KiB (every path of the three-stream CRC)', () => {
  const dv = (b: Buffer): DataView => new DataView(b.buffer, b.byteOffset, b.byteLength);
  for (let round = 0; round < 200; round++) {
    const lengths = Array.from({ length: 1 + (round % 37) }, (_, i) => (i * 7919 + round * 31) % (round % 17 === 0 ? 70_000 : round % 5 === 0 ? 9216 : 300));
    const buf = Buffer.alloc(lengths.reduce((a, l) => a + l + RECORD_HEADER_SIZE, 0) + 64);
    const from = round % 13;
    const to = frames(buf, from, lengths);
    const before = Buffer.from(buf);
    sealFrames(buf, dv(buf), from, to);
    assert.equal(checkSealed(buf, from, to), lengths.length);
    // Only the CRC fields changed.
    for (let at = from, i = 0; i < lengths.length; at += RECORD_HEADER_SIZE + lengths[i]!, i++) before.writeUInt32LE(buf.readUInt32LE(at + 4), at + 4);
    assert.deepEqual(buf, before);
  }
});

test('a run whose length fields do not end at `to` is refused, nothing past the last whole frame is touched', () => {
  const buf = Buffer.alloc(1024);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const end = frames(buf, 0, [100, 50]);
  assert.throws(() => sealFrames(buf, dv, 0, end - 1));
  assert.throws(() => sealFrames(buf, dv, 0, end + 3));
});

test('without the addon the writer seals in TypeScript: records written, read back and CRC-checked', () => {
  const dir = tempDir();
  const url = (p: string): string => new URL(p, import.meta.url).href;
  const script = `
    const { CoreWalWriter, PerCoreWalReader, PerCoreWalEntry } = await import(${JSON.stringify(url('../src/index.js'))});
    const { sealBackend } = await import(${JSON.stringify(url('../src/record/seal.js'))});
    const path = ${JSON.stringify(join(dir, 'wal-0.log'))};
    const w = CoreWalWriter.create(0, path, { bufferSize: 4096 });
    for (let i = 0; i < 500; i++) {
      if (i % 7 === 3) w.appendDelete(Buffer.from('k' + i));
      else if (i % 11 === 5) w.appendCommit({ p0: BigInt(i) }, BigInt(i));
      else w.appendPut(Buffer.from('k' + i), Buffer.alloc(i * 3, i & 255));
      if (i % 50 === 0) w.sync();
    }
    w.sync();
    w.close();
    const r = PerCoreWalReader.open(0, path);
    let n = 0;
    for (;;) { const x = r.readNext(); if (x.kind !== 'entry') { console.log(JSON.stringify([sealBackend.native, n, x.kind])); break; } n++; }
  `;
  const r = runModule(script, { env: { ...process.env, COREWAL_FRAMES_ADDON: 'off' } });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), [false, 500, 'eof']);
});
