import { crc32c, CoreWalWriter, PerCoreWalError, PerCoreWalReader, scanSegment, type PerCoreWalEntry } from '../../src/index.js';
import { decodePayload, encodePayloadToBuffer } from '../../src/entry/codec.js';
import { encodeRecord, RECORD_HEADER_SIZE } from '../../src/record/framing.js';
import { Rng, SimDisk } from '../../src/testing/index.js';
import { TortureFailure, type SeedResult, type TortureSuite } from './harness.js';

/**
 * A mutation fuzzer for corewal's decoders (no coverage-guided fuzzer installs here:
 * @jazzer.js/core's prebuilt addon needs a newer glibc). Seeds are real segments written
 * by the writer; mutations are bit flips, byte sets, dictionary tokens, truncations,
 * extensions, splices, insertions, deletions, length- and CRC-field edits, and CRC fix-ups
 * so that mutated payloads get past the checksum to the payload decoder.
 *
 * Each input must give only typed results (reader: `WalReadResult`s and no exception;
 * codec: an entry or a `DECODE` error), finish in bounded steps, allocate no more than
 * its own size (measured by wrapping Buffer's allocators), and never yield a wrong entry:
 * an entry the reader returns is byte for byte a record that was written (or, after a
 * CRC fix-up, exactly the bytes at its position), and an entry the codec returns
 * re-encodes to exactly the input.
 */

interface Corpus {
  segments: Buffer[];
  payloads: Buffer[];
  /** Hex of every record the writer really wrote. */
  written: Set<string>;
}

const DICT: Buffer[] = [
  [0], [0xff], [1], [2], [3], [4], [5], [6], [0x80],
  [0, 0, 0, 0], [0xff, 0xff, 0xff, 0xff], [1, 0, 0, 0], [36, 0, 0, 0], [35, 0, 0, 0], [44, 0, 0, 0],
  [0xff, 0xff, 0xff, 0x7f], [1, 0, 0, 0x10], [0, 0, 0x20, 0], [0xff, 0xff, 0x1f, 0],
  [0xef, 0xbb, 0xbf], [0xc0, 0x80], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xff, 0xfe],
  [0xff, 0xff], [0, 0],
].map((a) => Buffer.from(a));

function buildCorpus(rng: Rng): Corpus {
  const disk = new SimDisk();
  const segments: Buffer[] = [];
  const written = new Set<string>();
  const payloads: Buffer[] = [];
  for (let s = 0; s < 12; s++) {
    const path = `/seg-${s}.log`;
    const w = CoreWalWriter.create(0, path, { fs: disk, preallocate: s % 3 === 0 ? 128 : 0, bufferSize: 4096, epoch: rng.int(3) });
    const n = rng.range(1, 7);
    for (let i = 0; i < n; i++) {
      const r = rng.float();
      if (r < 0.35) w.appendPut(rng.bytes(rng.int(12)), rng.bytes(rng.int(rng.bool(0.1) ? 300 : 40)));
      else if (r < 0.5) w.appendDelete(rng.bytes(rng.int(10)));
      else if (r < 0.7) {
        const offsets: Record<string, bigint> = {};
        for (let k = rng.int(4); k > 0; k--) offsets[rng.pick(['a', 'topic-1', 'é', '日本', '\u{1F600}', ''])] = BigInt(rng.u32()) - 7n;
        w.appendCommit(offsets, rng.bool(0.5) ? null : -BigInt(rng.u32()));
      } else if (r < 0.8) w.appendCheckpoint(BigInt(rng.u32()) * 3n);
      else if (r < 0.9) w.appendEpochBarrier();
      else w.setEpoch(w.epoch() + 1n);
      if (rng.bool(0.4)) w.sync();
    }
    // Half the seeds end with unsynced records and a crash: real torn and debris shapes.
    if (rng.bool(0.5)) {
      for (let i = rng.range(1, 4); i > 0; i--) w.appendPut(rng.bytes(rng.int(8)), rng.bytes(rng.int(60)));
      w.flush();
      const crashed = disk.crash(rng.fork());
      segments.push(crashed.fileContents(path));
    }
    w.sync();
    w.close();
    segments.push(disk.fileContents(path));
    for (const e of PerCoreWalReader.open(0, path, { fs: disk }).readAll()) {
      const rec = encodeRecord(e, e.syncedBoundary);
      written.add(rec.toString('hex'));
      payloads.push(rec.subarray(RECORD_HEADER_SIZE));
    }
  }
  return { segments, payloads, written };
}

/** Offsets where records start in a (possibly mutated) segment, by walking its length fields. */
function boundaries(buf: Buffer): number[] {
  const out: number[] = [];
  for (let at = 0; at + RECORD_HEADER_SIZE <= buf.length && out.length < 64; ) {
    const len = buf.readUInt32LE(at);
    if (len === 0) break;
    out.push(at);
    at += RECORD_HEADER_SIZE + len;
  }
  return out;
}

/**
 * One mutated copy of `input`. `spliceFrom` supplies chunks for splices; `framed` enables the
 * record-aware mutations (length/CRC field edits and CRC fix-ups of WAL records).
 */
export function mutate(rng: Rng, input: Buffer, spliceFrom: readonly Buffer[], framed: boolean): { out: Buffer; fixed: boolean } {
  let b: Buffer = Buffer.from(input);
  let fixed = false;
  const rounds = rng.bool(0.5) ? 1 : rng.range(2, 6);
  for (let r = 0; r < rounds; r++) {
    const pos = b.length === 0 ? 0 : rng.int(b.length);
    switch (rng.int(framed ? 13 : 10)) {
      case 0: if (b.length > 0) b[pos] = b[pos]! ^ (1 << rng.int(8)); break;
      case 1: if (b.length > 0) b[pos] = rng.pick([0, 0xff, 1, 0x7f, 0x80, rng.int(256)]); break;
      case 2: {
        const t = rng.pick(DICT);
        if (b.length >= t.length) t.copy(b, rng.int(b.length - t.length + 1));
        break;
      }
      case 3: b = b.subarray(0, rng.int(b.length + 1)); break;
      case 4: b = Buffer.concat([b, rng.bool(0.5) ? Buffer.alloc(rng.int(64)) : rng.bytes(rng.int(64))]); break;
      case 5: {
        // Splice: a chunk of another seed (or this input) over or into this one.
        const src = rng.bool(0.5) && spliceFrom.length > 0 ? rng.pick(spliceFrom) : b;
        const from = rng.int(src.length + 1);
        const chunk = Buffer.from(src.subarray(from, from + rng.int(src.length - from + 1)));
        b = rng.bool(0.5) ? Buffer.concat([b.subarray(0, pos), chunk, b.subarray(pos)]) : Buffer.concat([b.subarray(0, pos), chunk, b.subarray(pos + chunk.length)]);
        break;
      }
      case 6: b = Buffer.concat([b.subarray(0, pos), rng.bytes(rng.int(8)), b.subarray(pos)]); break;
      case 7: b = Buffer.concat([b.subarray(0, pos), b.subarray(pos + rng.int(16))]); break;
      case 8: if (b.length > 0) rng.bytes(Math.min(b.length - pos, rng.int(32))).copy(b, pos); break;
      case 9: b = rng.bool(0.9) ? b : rng.bytes(rng.int(200)); break;
      case 10: case 11: {
        // Length or CRC field of a record boundary: off by a little, or an extreme value.
        const starts = boundaries(b);
        if (starts.length === 0) break;
        const at = rng.pick(starts) + (rng.bool(0.7) ? 0 : 4);
        if (at + 4 > b.length) break;
        const old = b.readUInt32LE(at);
        b.writeUInt32LE(rng.pick([0, 1, 0xffffffff, b.length, (old + rng.range(-9, 9)) >>> 0, rng.u32(), 36, 37]) >>> 0, at);
        break;
      }
      case 12: {
        // CRC fix-up: a mutated payload that reaches the payload decoder through the reader.
        const starts = boundaries(b);
        if (starts.length === 0) break;
        const at = rng.pick(starts);
        const len = b.readUInt32LE(at);
        if (at + RECORD_HEADER_SIZE + len > b.length) break;
        if (rng.bool(0.7) && len > 0) {
          const p = at + RECORD_HEADER_SIZE + rng.int(len);
          const t = rng.pick(DICT);
          if (p + t.length <= at + RECORD_HEADER_SIZE + len && rng.bool(0.5)) t.copy(b, p);
          else b[p] = rng.int(256);
        }
        b.writeUInt32LE(crc32c(b, at + RECORD_HEADER_SIZE, at + RECORD_HEADER_SIZE + len), at + 4);
        fixed = true;
        break;
      }
    }
  }
  return { out: b, fixed };
}

/** Counts what Buffer's allocators hand out while `f` runs. */
export class AllocMeter {
  largest = 0;
  total = 0;
  private saved: { alloc: typeof Buffer.alloc; allocUnsafe: typeof Buffer.allocUnsafe; allocUnsafeSlow: typeof Buffer.allocUnsafeSlow; from: typeof Buffer.from } | null = null;

  install(): void {
    const B = Buffer as unknown as Record<string, (...a: unknown[]) => Buffer>;
    const saved = { alloc: Buffer.alloc, allocUnsafe: Buffer.allocUnsafe, allocUnsafeSlow: Buffer.allocUnsafeSlow, from: Buffer.from };
    this.saved = saved;
    const count = (n: number): void => {
      this.total += n;
      if (n > this.largest) this.largest = n;
    };
    B.alloc = (...a: unknown[]) => { count(a[0] as number); return (saved.alloc as (...x: unknown[]) => Buffer)(...a); };
    B.allocUnsafe = (...a: unknown[]) => { count(a[0] as number); return (saved.allocUnsafe as (...x: unknown[]) => Buffer)(...a); };
    B.allocUnsafeSlow = (...a: unknown[]) => { count(a[0] as number); return (saved.allocUnsafeSlow as (...x: unknown[]) => Buffer)(...a); };
    B.from = (...a: unknown[]) => {
      const out = (saved.from as (...x: unknown[]) => Buffer)(...a);
      // Buffer.from(arrayBuffer, offset, length) is a view: nothing is allocated.
      if (!(a[0] instanceof ArrayBuffer || a[0] instanceof SharedArrayBuffer)) count(out.length);
      return out;
    };
  }

  reset(): void { this.largest = 0; this.total = 0; }

  uninstall(): void {
    if (this.saved === null) return;
    Object.assign(Buffer, this.saved);
    this.saved = null;
  }
}

export interface FuzzOptions {
  seed: number;
  /** Inputs to the reader (framing + payload decoding through real segment files on a SimDisk). */
  readerInputs: number;
  /** Inputs to the payload codec directly. */
  codecInputs: number;
}

export interface FuzzStats {
  readerInputs: number;
  codecInputs: number;
  entriesDecoded: number;
  typedErrors: number;
  crcFixups: number;
}

const SUITE = 'fuzz';

/** Runs the fuzzer; throws a {@link TortureFailure} naming the seed and input on the first finding. */
export function runFuzz(options: FuzzOptions): FuzzStats {
  const rng = new Rng(options.seed);
  const corpus = buildCorpus(rng);
  const disk = new SimDisk();
  const stats: FuzzStats = { readerInputs: 0, codecInputs: 0, entriesDecoded: 0, typedErrors: 0, crcFixups: 0 };
  const meter = new AllocMeter();
  let current: Buffer = Buffer.alloc(0);
  let label = '';
  const fail = (m: string): never => {
    throw new TortureFailure(SUITE, options.seed, `${label}: ${m}\n  input (${current.length} bytes): ${current.subarray(0, 8192).toString('hex')}`);
  };
  const arrayBuffersBefore = process.memoryUsage().arrayBuffers;
  meter.install();
  try {
    for (let i = 0; i < options.readerInputs; i++) {
      label = `reader input #${i}`;
      const { out, fixed } = mutate(rng, rng.pick(corpus.segments), corpus.segments, true);
      current = out;
      if (fixed) stats.crcFixups++;
      const t0 = performance.now();
      fuzzReader(rng, disk, out, fixed, corpus, meter, stats, fail);
      // Small inputs: anything slow is a loop or super-linear work, not noise.
      const took = performance.now() - t0;
      if (took > 500) fail(`took ${took.toFixed(0)} ms`);
      stats.readerInputs++;
    }
    for (let i = 0; i < options.codecInputs; i++) {
      label = `codec input #${i}`;
      const { out } = mutate(rng, rng.pick(corpus.payloads), corpus.payloads, false);
      current = out;
      fuzzCodec(out, meter, stats, fail);
      stats.codecInputs++;
    }
  } finally {
    meter.uninstall();
  }
  const growth = process.memoryUsage().arrayBuffers - arrayBuffersBefore;
  if (growth > 256 << 20) fail(`external memory grew by ${growth} bytes over the run`);
  return stats;
}

function fuzzReader(
  rng: Rng, disk: SimDisk, input: Buffer, fixed: boolean, corpus: Corpus, meter: AllocMeter, stats: FuzzStats, fail: (m: string) => never,
): void {
  disk.setFileContents('/f.log', input);
  const blockSize = rng.pick([16, 64, 256, 4096]);
  const maxRecordSize = rng.pick([64, 512, 256 << 20]);
  meter.reset();
  let reader: PerCoreWalReader;
  try {
    reader = PerCoreWalReader.open(0, '/f.log', { fs: disk, blockSize, maxRecordSize });
  } catch (e) {
    return fail(`open threw ${String(e)}`);
  }
  try {
    // Every entry advances at least a header and a payload header: more steps is a loop.
    const maxSteps = Math.floor(input.length / (RECORD_HEADER_SIZE + 36)) + 2;
    for (let step = 0; ; step++) {
      if (step > maxSteps) fail(`reader made ${step} steps over ${input.length} bytes`);
      const at = reader.position();
      let r;
      try {
        r = reader.readNext();
      } catch (e) {
        return fail(`readNext threw on bad data: ${String((e as Error)?.stack ?? e)}`);
      }
      if (r.kind === 'eof') break;
      if (r.kind !== 'entry') {
        if (r.position !== at || reader.position() !== at) fail(`${r.kind} at ${r.position}, reader at ${reader.position()}, read from ${at}`);
        if (!['tornWrite', 'checksumMismatch', 'corrupted'].includes(r.kind)) fail(`unknown result kind ${(r as { kind: string }).kind}`);
        stats.typedErrors++;
        break;
      }
      stats.entriesDecoded++;
      const rec = encodeRecord(r.entry, r.entry.syncedBoundary);
      const onDisk = input.subarray(at, reader.position());
      if (!rec.equals(onDisk)) fail(`entry at ${at} re-encodes to ${rec.toString('hex')} but the file holds ${onDisk.toString('hex')}`);
      if (!fixed && !corpus.written.has(rec.toString('hex'))) fail(`entry at ${at} was never written: ${rec.toString('hex')}`);
      if (r.entry.coreId !== 0) fail(`entry of core ${r.entry.coreId} from the segment of core 0`);
    }
  } finally {
    reader.close();
  }
  if (meter.largest > Math.max(blockSize, input.length) || meter.total > blockSize + 3 * input.length + 1024) {
    fail(`allocated ${meter.total} bytes (largest ${meter.largest}) for a ${input.length}-byte file with ${blockSize}-byte blocks`);
  }
  if (rng.bool(0.25)) {
    meter.reset();
    let scan;
    try {
      scan = scanSegment(0, '/f.log', { fs: disk, maxRecordSize });
    } catch (e) {
      return fail(`scanSegment threw ${String((e as Error)?.stack ?? e)}`);
    }
    if (!['clean', 'torn', 'debris', 'damaged'].includes(scan.tail)) fail(`tail ${scan.tail}`);
    if (scan.validEnd > input.length || (scan.tail === 'clean') !== (scan.bad === null)) fail(`inconsistent scan ${JSON.stringify({ ...scan, first: null, last: null })}`);
  }
}

function fuzzCodec(input: Buffer, meter: AllocMeter, stats: FuzzStats, fail: (m: string) => never): void {
  // Decode from the middle of a larger buffer: offsets must be honoured.
  const pad = 3;
  const host = Buffer.alloc(input.length + 2 * pad, 0xa5);
  input.copy(host, pad);
  const dv = new DataView(host.buffer, host.byteOffset, host.byteLength);
  meter.reset();
  let entry: PerCoreWalEntry;
  try {
    entry = decodePayload(host, dv, pad, pad + input.length);
  } catch (e) {
    if (!(e instanceof PerCoreWalError) || e.code !== 'DECODE') fail(`decodePayload threw ${String((e as Error)?.stack ?? e)}`);
    stats.typedErrors++;
    return;
  }
  if (meter.largest > input.length || meter.total > 2 * input.length + 64) fail(`decode allocated ${meter.total} bytes (largest ${meter.largest}) for ${input.length}`);
  stats.entriesDecoded++;
  const again = encodePayloadToBuffer(entry, entry.syncedBoundary);
  if (!again.equals(input)) fail(`decoded entry re-encodes differently: ${again.toString('hex')}`);
}

export const fuzzSuite: TortureSuite = {
  name: SUITE,
  run: (seed): SeedResult => {
    const s = runFuzz({ seed, readerInputs: 6000, codecInputs: 4000 });
    return { iterations: s.readerInputs + s.codecInputs, crashes: 0 };
  },
};
