import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { crc32c, crc32cBackend, crc32cJs } from '../src/index.js';
import { crc32cNative } from '../src/crc/crc32c.js';

test('CRC-32C check value 0xE3069283 from both implementations', () => {
  const data = Buffer.from('123456789');
  assert.equal(crc32cJs(data), 0xe3069283);
  assert.equal(crc32c(data), 0xe3069283);
  assert.equal(crc32cBackend.native, true, `native crc32c should load on this machine: ${crc32cBackend.reason}`);
  assert.equal(crc32cNative(data), 0xe3069283);
});

test('table and SIMD agree on random data of every length up to 4 KiB, at every alignment, and chain', () => {
  const buf = randomBytes(8192);
  for (let len = 0; len <= 4096; len += len < 64 ? 1 : 61) {
    for (const start of [0, 1, 3, 7]) {
      const js = crc32cJs(buf, start, start + len);
      assert.equal(crc32cNative(buf, start, start + len), js, `len ${len} start ${start}`);
      assert.equal(crc32c(buf, start, start + len), js);
      const mid = start + (len >> 1);
      assert.equal(crc32cJs(buf, mid, start + len, crc32cJs(buf, start, mid)), js, 'continuation');
      assert.equal(crc32c(buf, mid, start + len, crc32cNative(buf, start, mid)), js, 'mixed continuation');
    }
  }
});

test('without the native binding the table is used automatically', async () => {
  const { spawnSync } = await import('node:child_process');
  const url = new URL('../src/crc/crc32c.js', import.meta.url).href;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e',
    `const m = await import(${JSON.stringify(url)}); console.log(JSON.stringify([m.crc32cBackend.native, m.crc32c(Buffer.alloc(4096, 7)) === m.crc32cJs(Buffer.alloc(4096, 7)), m.crc32c(Buffer.from('123456789'))]))`],
  { env: { ...process.env, COREWAL_NO_NATIVE_CRC: '1' }, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), [false, true, 0xe3069283]);
});
