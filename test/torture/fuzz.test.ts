import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PerCoreWalEntry } from '../../src/index.js';
import { decodePayloadBuffer, encodePayloadToBuffer } from '../../src/entry/codec.js';
import { runCheckpointFuzz } from './checkpoint-fuzz.js';
import { runFuzz } from './fuzz.js';
import { runRecoveryFuzz } from './recovery-fuzz.js';

test('fuzz: 100 000 mutated segments and payloads, only typed results, bounded allocation, never a wrong entry', () => {
  let inputs = 0, entries = 0, fixups = 0;
  for (let seed = 1; seed <= 10; seed++) {
    const s = runFuzz({ seed, readerInputs: 6000, codecInputs: 4000 });
    inputs += s.readerInputs + s.codecInputs;
    entries += s.entriesDecoded;
    fixups += s.crcFixups;
  }
  assert.equal(inputs, 100_000);
  // The fuzzer must reach the decoders, not only the framing checks.
  assert.ok(entries > 10_000, `only ${entries} entries decoded`);
  assert.ok(fixups > 1000);
});

test('regression (found by the fuzzer, seed 10): a commit source name starting with U+FEFF round-trips', () => {
  const e = PerCoreWalEntry.commit(0, 1, 2, new Map([['\uFEFF日本', 5n], ['\uFEFF', 6n]]), null, 3);
  const back = decodePayloadBuffer(encodePayloadToBuffer(e));
  assert.deepEqual([...(back.operation as { offsets: Map<string, bigint> }).offsets.keys()], ['\uFEFF日本', '\uFEFF']);
});

test('fuzz: 20 000 mutated checkpoint files, only CHECKPOINT_INVALID or the state that was written', () => {
  let decoded = 0;
  for (let seed = 1; seed <= 4; seed++) decoded += runCheckpointFuzz({ seed, inputs: 5000 }).decoded;
  // CRC fix-ups must get some mutations through to the meta and body decoders.
  assert.ok(decoded > 500, `only ${decoded} decoded`);
});

test('fuzz: 10 000 mutated WALs through recover() in every mode, only typed results, never an invented change', () => {
  let recovered = 0;
  for (let seed = 1; seed <= 10; seed++) recovered += runRecoveryFuzz({ seed, inputs: 1000 }).recovered;
  assert.ok(recovered > 2000, `only ${recovered} recoveries succeeded`);
});
