import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';
import { CoreWalWriter, encodeRecord, PerCoreWalEntry, scanSegment } from '../src/index.js';
import { CLI, corewal, corewalInTerminal, corewalScreen, json } from './helpers/cli.js';
import { tempDir } from './helpers/tmp.js';
import { damagedWal, debrisWal, emptyWal, healthyWal, seg, tornWal } from './helpers/wal-dirs.js';

/** The valid prefix of a segment, as the library reads it. */
function validEntries(path: string, coreId: number): PerCoreWalEntry[] {
  const out: PerCoreWalEntry[] = [];
  scanSegment(coreId, path, { onEntry: (e) => out.push(e) });
  return out;
}

const summary = (es: PerCoreWalEntry[]) => es.map((e) => `${e.coreId}/${e.sequence}/${e.epoch}/${e.operation.type}`);

function bytesOf(text: string, encoding: string): Buffer {
  return Buffer.from(text, encoding === 'hex' ? 'hex' : 'utf8');
}

describe('usage and exit codes', () => {
  test('--help on the program and on every command exits 0 and shows that command', () => {
    const top = corewal(['--help']);
    assert.equal(top.code, 0);
    for (const name of ['demo', 'inspect', 'dump', 'verify', 'repair', 'recover', 'bench']) assert.match(top.stdout, new RegExp(`^  ${name} `, 'm'));
    for (const [name, option] of [
      ['demo', '--seconds'], ['inspect', '--checkpoint-dir'], ['dump', '--from-epoch'], ['verify', '--checkpoint-dir'], ['repair', '--yes'],
      ['recover', '--mode'], ['bench', '--seconds'],
    ]) {
      const r = corewal([name!, '--help']);
      assert.equal(r.code, 0, name);
      assert.match(r.stdout, new RegExp(`Usage: corewal ${name}`));
      assert.ok(r.stdout.includes(option!), `${name} --help mentions ${option}`);
      if (name !== 'bench') assert.ok(r.stdout.includes('--json'), `${name} --help mentions --json`);
    }
  });

  test('package.json bin points at the compiled entry point, which starts with a node shebang', () => {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'));
    assert.equal(fileURLToPath(new URL(`../../${pkg.bin.corewal}`, import.meta.url)), CLI);
    assert.equal(readFileSync(CLI, 'utf8').split('\n')[0], '#!/usr/bin/env node');
    assert.match(pkg.scripts.prepare, /chmodSync\('dist\/src\/cli\/main\.js', 0o755\)/);
  });

  test('commander usage errors exit 2 with a message on stderr', () => {
    const dir = tempDir();
    healthyWal(dir, 1, 3);
    const cases: string[][] = [
      [],
      ['nonsense'],
      ['inspect'],
      ['inspect', dir, '--bogus'],
      ['dump', dir, '--op', 'frobnicate'],
      ['dump', dir, '--from-epoch', '-1'],
      ['dump', dir, '--core', 'x'],
      ['dump', dir, '--max-value', '1.5'],
      ['bench', '--seconds', '0'],
      ['verify', dir, 'extra-argument'],
    ];
    for (const args of cases) {
      const r = corewal(args);
      assert.equal(r.code, 2, `corewal ${args.join(' ')} → ${r.code}\n${r.stderr}`);
      assert.ok(r.stderr.length > 0, `corewal ${args.join(' ')} says why`);
      assert.equal(r.stdout.includes('"segments"'), false);
    }
  });

  test('our own usage errors exit 2 too: missing directory, a file for a directory, bad pattern, bad regex', () => {
    const dir = tempDir();
    healthyWal(dir, 1, 3);
    const missing = corewal(['inspect', join(dir, 'no-such-dir')]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /no-such-dir does not exist/);
    const file = corewal(['verify', seg(dir, 0)]);
    assert.equal(file.code, 2);
    assert.match(file.stderr, /is not a directory/);
    assert.equal(corewal(['inspect', dir, '--pattern', 'wal.log']).code, 2);
    assert.equal(corewal(['inspect', dir, '--pattern', 'x/{core_id}.log']).code, 2);
    assert.equal(corewal(['bench', '--filter', '(']).code, 2);
    assert.equal(corewal(['--version']).code, 0);
    const help = corewal(['help', 'verify']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /Usage: corewal verify/);
  });
});

describe('inspect', () => {
  test('healthy directory: one row per segment with ranges, valid end, zero torn bytes; exit 0', () => {
    const dir = tempDir();
    healthyWal(dir, 2, 40);
    const r = corewal(['inspect', dir, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const out = json(r);
    assert.equal(out.segments.length, 2);
    for (const [i, s] of out.segments.entries()) {
      const scan = scanSegment(i, seg(dir, i));
      assert.deepEqual(
        { coreId: s.coreId, file: s.file, size: s.size, entries: s.entries, validEnd: s.validEnd, tornBytes: s.tornBytes, tail: s.tail },
        { coreId: i, file: `wal-${i}.log`, size: statSync(seg(dir, i)).size, entries: 40, validEnd: scan.validEnd, tornBytes: 0, tail: 'clean' },
      );
      assert.deepEqual([s.epochFirst, s.epochLast, s.sequenceFirst, s.sequenceLast], ['0', '3', '0', '39']);
      assert.equal(s.paddingBytes, s.size - s.validEnd);
      assert.ok(s.paddingBytes > 0, 'the writer preallocated zeros, which are padding, not torn bytes');
      assert.equal(s.problem, null);
    }
    assert.deepEqual(out.totals, { segments: 2, bytes: out.segments[0].size + out.segments[1].size, entries: 80, tornBytes: 0, damaged: 0 });

    const text = corewal(['inspect', dir]);
    assert.equal(text.code, 0);
    assert.match(text.stdout, /core\s+file\s+size\s+entries\s+epochs\s+sequences\s+valid end\s+torn bytes\s+tail/);
    assert.match(text.stdout, new RegExp(`^\\s+1\\s+wal-1\\.log\\s+\\S+ MiB\\s+40\\s+0–3\\s+0–39\\s+${out.segments[1].validEnd}\\s+0\\s+clean$`, 'm'));
  });

  test('torn tail: torn bytes and the tail state, the problem named by file and byte; exit 0 (repairable)', () => {
    const dir = tempDir();
    const torn = tornWal(dir);
    const r = corewal(['inspect', dir, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const s1 = json(r).segments[1];
    assert.deepEqual([s1.tail, s1.validEnd, s1.tornBytes, s1.size, s1.entries], ['torn', torn.validEnd, torn.size - torn.validEnd, torn.size, 40]);
    assert.equal(s1.problem.code, 'TORN_WRITE');
    assert.equal(s1.problem.position, torn.validEnd);
    const text = corewal(['inspect', dir]);
    assert.match(text.stdout, new RegExp(`core 1: torn write in \\S+wal-1\\.log at byte ${torn.validEnd}`));
  });

  test('damage to synced data: tail damaged with its evidence, exit 1', () => {
    const dir = tempDir();
    const { badPosition } = damagedWal(dir);
    const r = corewal(['inspect', dir, '--json']);
    assert.equal(r.code, 1);
    const s1 = json(r).segments[1];
    assert.equal(s1.tail, 'damaged');
    assert.equal(s1.validEnd, badPosition);
    assert.equal(s1.entries, 12);
    assert.equal(s1.problem.code, 'CHECKSUM_MISMATCH');
    assert.equal(s1.problem.position, badPosition);
    assert.match(s1.problem.message, /data promised durable is lost/);
    assert.equal(json(r).totals.damaged, 1);
    const text = corewal(['inspect', dir]);
    assert.equal(text.code, 1);
    assert.match(text.stdout, new RegExp(`wal-1\\.log at byte ${badPosition}`));
  });

  test('empty directory and a zero-byte segment', () => {
    const none = tempDir();
    const r0 = corewal(['inspect', none, '--json']);
    assert.equal(r0.code, 0);
    assert.deepEqual(json(r0).segments, []);
    assert.match(corewal(['inspect', none]).stdout, /no segments matching wal-\{core_id\}\.log/);
    const dir = tempDir();
    emptyWal(dir);
    const r = corewal(['inspect', dir, '--json']);
    assert.equal(r.code, 0);
    const s = json(r).segments[0];
    assert.deepEqual([s.size, s.entries, s.epochFirst, s.sequenceLast, s.validEnd, s.tail], [0, 0, null, null, 0, 'clean']);
  });

  test('--pattern finds segments named otherwise; the default ignores them and other files', () => {
    const dir = tempDir();
    healthyWal(dir, 2, 5);
    renameSync(seg(dir, 0), join(dir, 'core-0.seg'));
    renameSync(seg(dir, 1), join(dir, 'core-1.seg'));
    writeFileSync(join(dir, 'wal-x.log'), 'not a segment');
    assert.deepEqual(json(corewal(['inspect', dir, '--json'])).segments, []);
    const r = corewal(['inspect', dir, '--json', '--pattern', 'core-{core_id}.seg']);
    assert.equal(r.code, 0);
    assert.deepEqual(json(r).segments.map((s: any) => [s.coreId, s.file, s.entries]), [[0, 'core-0.seg', 5], [1, 'core-1.seg', 5]]);
  });
});

describe('dump', () => {
  test('NDJSON: every entry of every segment, keys and values round-trip through utf8/hex', () => {
    const dir = tempDir();
    healthyWal(dir, 2, 40);
    const r = corewal(['dump', dir, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trimEnd().split('\n').map((l) => JSON.parse(l));
    const expected = [...validEntries(seg(dir, 0), 0), ...validEntries(seg(dir, 1), 1)];
    assert.equal(lines.length, 80);
    assert.deepEqual(lines.map((l) => `${l.coreId}/${l.sequence}/${l.epoch}/${l.op}`), summary(expected));
    let hex = 0;
    for (const [i, l] of lines.entries()) {
      const e = expected[i]!;
      assert.equal(l.timestampNs, String(e.timestampNs));
      if (e.key() !== undefined) assert.deepEqual(bytesOf(l.key, l.keyEncoding), Buffer.from(e.key()!));
      if (e.value() !== undefined) {
        assert.deepEqual(bytesOf(l.value, l.valueEncoding), Buffer.from(e.value()!));
        assert.equal(l.valueSize, e.value()!.length);
      }
      if (l.keyEncoding === 'hex') hex++;
      if (e.operation.type === 'checkpoint') assert.equal(l.checkpointId, String(e.operation.id));
      if (e.operation.type === 'commit') assert.deepEqual(l.offsets, { kafka: String(e.operation.offsets.get('kafka')) });
    }
    assert.ok(hex > 0, 'binary keys are shown as hex');
    assert.equal(lines.filter((l) => l.keyEncoding === 'utf8').length > 0, true);
  });

  test('filters: --core, --op, --from-epoch/--to-epoch select exactly the matching entries', () => {
    const dir = tempDir();
    healthyWal(dir, 3, 40);
    const all = [0, 1, 2].flatMap((c) => validEntries(seg(dir, c), c));
    const run = (...args: string[]) => {
      const r = corewal(['dump', dir, '--json', ...args]);
      assert.equal(r.code, 0, r.stderr);
      return r.stdout === '' ? [] : r.stdout.trimEnd().split('\n').map((l) => JSON.parse(l));
    };
    const key = (l: any) => `${l.coreId}/${l.sequence}/${l.epoch}/${l.op}`;
    assert.deepEqual(run('--core', '2,0').map(key), summary(all.filter((e) => e.coreId !== 1)));
    assert.deepEqual(run('--op', 'delete,checkpoint').map(key), summary(all.filter((e) => e.isDelete() || e.isCheckpoint())));
    const byEpoch = run('--from-epoch', '1', '--to-epoch', '2');
    assert.deepEqual(byEpoch.map(key), summary(all.filter((e) => e.epoch >= 1n && e.epoch <= 2n)));
    assert.ok(byEpoch.length > 0 && byEpoch.length < all.length);
    assert.deepEqual(run('--core', '1', '--op', 'put', '--from-epoch', '3').map(key),
      summary(all.filter((e) => e.coreId === 1 && e.isPut() && e.epoch >= 3n)));
    assert.deepEqual(run('--from-epoch', '99'), []);
  });

  test('text: one line per entry, file@position, quoted UTF-8 or 0x hex; a single segment file works', () => {
    const dir = tempDir();
    healthyWal(dir, 1, 40);
    const r = corewal(['dump', seg(dir, 0)]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trimEnd().split('\n');
    assert.equal(lines.length, 40);
    assert.match(lines[0]!, /^wal-0\.log@0 {2}core 0 {2}epoch 0 {2}seq 0 {2}\d{4}-\d\d-\d\dT[\d:]+\.\d{9}Z {2}put "key-0-0" = "value 0 of core 0"$/);
    assert.match(lines[3]!, /put 0x000102ff03 = 0xdead03$/);
    assert.match(lines[5]!, /delete "key-0-5"$/);
    assert.match(lines[9]!, /checkpoint 9$/);
    assert.match(lines[11]!, /commit \{"kafka":110\} watermark 11$/);
    const short = corewal(['dump', seg(dir, 0), '--max-value', '5']);
    assert.match(short.stdout.split('\n')[0]!, /put "key-…\(7 bytes\) = "valu…\(17 bytes\)$/);
    const odd = join(dir, 'other-name.bin');
    writeFileSync(odd, readFileSync(seg(dir, 0)));
    assert.equal(corewal(['dump', odd]).code, 2);
    assert.equal(corewal(['dump', odd, '--pattern', 'other-name.bin{core_id}']).code, 2);
  });

  test('a bad record ends the dump of its segment with file and byte position; exit 1', () => {
    const dir = tempDir();
    const torn = tornWal(dir);
    const r = corewal(['dump', dir]);
    assert.equal(r.code, 1);
    assert.equal(r.stdout.trimEnd().split('\n').length, 80, 'every valid entry before the torn record is shown');
    assert.match(r.stderr, new RegExp(`dump of wal-1\\.log stopped: torn write in \\S+wal-1\\.log at byte ${torn.validEnd}`));

    const dmg = tempDir();
    const { badPosition } = damagedWal(dmg);
    const j = corewal(['dump', dmg, '--json', '--core', '1']);
    assert.equal(j.code, 1);
    const entries = j.stdout.trimEnd().split('\n').map((l) => JSON.parse(l));
    assert.equal(entries.length, 12);
    assert.ok(entries.every((e) => e.position < badPosition));
    const err = JSON.parse(j.stderr.trim());
    assert.deepEqual([err.error, err.file, err.position, err.tail], ['CHECKSUM_MISMATCH', 'wal-1.log', badPosition, 'damaged']);
  });
});

describe('verify', () => {
  test('healthy: OK and exit 0; empty directory and empty segment too', () => {
    const dir = tempDir();
    healthyWal(dir, 2, 40);
    const r = corewal(['verify', dir]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /^OK: 2 segments, 80 valid entries/m);
    const j = json(corewal(['verify', dir, '--json']));
    assert.equal(j.ok, true);
    assert.deepEqual(j.problems, []);
    assert.deepEqual(j.segments.map((s: any) => [s.coreId, s.entries, s.tail, s.problems]), [[0, 40, 'clean', 0], [1, 40, 'clean', 0]]);
    const empty = tempDir();
    emptyWal(empty);
    assert.equal(corewal(['verify', empty]).code, 0);
  });

  test('torn tail: one torn problem at the valid end; exit 1, or 0 with --allow-torn', () => {
    const dir = tempDir();
    const torn = tornWal(dir);
    const r = corewal(['verify', dir, '--json']);
    assert.equal(r.code, 1);
    const j = json(r);
    assert.equal(j.ok, false);
    assert.equal(j.problems.length, 1);
    assert.deepEqual([j.problems[0].file, j.problems[0].position, j.problems[0].code, j.problems[0].severity], ['wal-1.log', torn.validEnd, 'TORN_WRITE', 'torn']);
    const text = corewal(['verify', dir]);
    assert.match(text.stdout, new RegExp(`^wal-1\\.log: byte ${torn.validEnd}: TORN_WRITE \\[torn\\]`, 'm'));
    assert.match(text.stdout, /^FAILED: 1 problem/m);
    const allowed = corewal(['verify', dir, '--allow-torn']);
    assert.equal(allowed.code, 0);
    assert.match(allowed.stdout, /OK \(--allow-torn\)/);
  });

  test('damage in the middle: named with its byte position, fails even with --allow-torn; debris is told apart', () => {
    const dir = tempDir();
    const { badPosition } = damagedWal(dir);
    for (const flags of [[], ['--allow-torn']]) {
      const r = corewal(['verify', dir, '--json', ...flags]);
      assert.equal(r.code, 1);
      const p = json(r).problems;
      assert.equal(p.length, 1);
      assert.deepEqual([p[0].file, p[0].position, p[0].severity, p[0].code], ['wal-1.log', badPosition, 'damage', 'CHECKSUM_MISMATCH']);
      assert.match(p[0].message, new RegExp(`wal-1\\.log at byte ${badPosition}`));
    }
    const deb = tempDir();
    const debris = debrisWal(deb);
    const d = json(corewal(['verify', deb, '--json']));
    assert.deepEqual(d.problems.map((p: any) => [p.position, p.severity]), [[debris.badPosition, 'debris']]);
    assert.equal(corewal(['verify', deb, '--allow-torn']).code, 0);
  });

  test('every bad place is named, not only the first', () => {
    const dir = tempDir();
    mkdirSync(dir, { recursive: true });
    const w = CoreWalWriter.create(0, seg(dir, 0), { preallocate: 0 });
    const starts: number[] = [];
    for (let i = 0; i < 30; i++) { starts.push(w.appendPut(Buffer.from(`k${i}`), Buffer.from(`v${i}`))); w.sync(); }
    w.close();
    const buf = readFileSync(seg(dir, 0));
    for (const i of [5, 17]) buf[starts[i]! + 20] ^= 0xff;
    writeFileSync(seg(dir, 0), buf);
    const j = json(corewal(['verify', dir, '--json']));
    assert.deepEqual(j.problems.map((p: any) => [p.position, p.severity]), [[starts[5], 'damage'], [starts[17], 'damage']]);
  });

  test('per-core order: a sequence or epoch going backwards in valid records is a problem', () => {
    const dir = tempDir();
    const t = 1_700_000_000_000_000_000n;
    const es = [
      PerCoreWalEntry.put(0, 1, 0, Buffer.from('a'), Buffer.from('1'), t),
      PerCoreWalEntry.put(0, 1, 1, Buffer.from('b'), Buffer.from('2'), t + 1n),
      PerCoreWalEntry.put(0, 1, 1, Buffer.from('c'), Buffer.from('3'), t + 2n),
      PerCoreWalEntry.put(0, 0, 2, Buffer.from('d'), Buffer.from('4'), t + 3n),
    ];
    const recs = es.map((e) => encodeRecord(e));
    writeFileSync(seg(dir, 0), Buffer.concat(recs));
    const r = corewal(['verify', dir, '--json']);
    assert.equal(r.code, 1);
    const p = json(r).problems;
    const at = (i: number) => recs.slice(0, i).reduce((s, b) => s + b.length, 0);
    assert.deepEqual(p.map((x: any) => [x.position, x.code, x.severity]), [[at(2), 'ORDER', 'order'], [at(3), 'ORDER', 'order']]);
    assert.match(p[0].message, /sequence 1 does not follow 1/);
    assert.match(p[1].message, /epoch 0 is below/);
  });
});

describe('repair', () => {
  const snapshot = (dir: string) => Object.fromEntries(readdirSync(dir).map((f) => [f, readFileSync(join(dir, f))]));

  test('without a terminal and without --yes it refuses (exit 2) and changes nothing; --dry-run changes nothing', () => {
    const dir = tempDir();
    tornWal(dir);
    const before = snapshot(dir);
    const r = corewal(['repair', dir]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /pass --yes/);
    assert.deepEqual(snapshot(dir), before);
    const dry = corewal(['repair', dir, '--dry-run', '--json']);
    assert.equal(dry.code, 0);
    assert.deepEqual(json(dry).segments.map((s: any) => s.action), ['none', 'would-cut']);
    assert.deepEqual(snapshot(dir), before);
  });

  test('--yes cuts only the torn tail: every valid entry survives, the segment verifies and accepts appends', () => {
    const dir = tempDir();
    const torn = tornWal(dir);
    const before = [0, 1].map((c) => summary(validEntries(seg(dir, c), c)));
    const core0 = readFileSync(seg(dir, 0));
    const r = corewal(['repair', dir, '--yes', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const j = json(r);
    assert.equal(j.bytesCut, torn.size - torn.validEnd);
    assert.deepEqual(j.segments.map((s: any) => [s.coreId, s.action, s.bytesCut, s.sizeAfter]),
      [[0, 'none', 0, core0.length], [1, 'cut', torn.size - torn.validEnd, torn.validEnd]]);
    assert.equal(statSync(seg(dir, 1)).size, torn.validEnd);
    assert.deepEqual(readFileSync(seg(dir, 0)), core0, 'a clean segment, preallocated zeros included, is untouched');
    assert.deepEqual([0, 1].map((c) => summary(validEntries(seg(dir, c), c))), before);
    assert.equal(corewal(['verify', dir]).code, 0);
    const w = CoreWalWriter.create(1, seg(dir, 1));
    assert.equal(w.sequence(), 40n);
    w.close();
    const again = corewal(['repair', dir, '--yes', '--json']);
    assert.equal(json(again).bytesCut, 0);
  });

  test('crash debris is cut back to the valid prefix, text report per segment', () => {
    const dir = tempDir();
    const { badPosition } = debrisWal(dir);
    const size = statSync(seg(dir, 1)).size;
    const before = summary(validEntries(seg(dir, 1), 1));
    const r = corewal(['repair', dir, '--yes']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^\\s+1\\s+wal-1\\.log\\s+debris\\s+${size}\\s+${badPosition}\\s+${size - badPosition}\\s+cut$`, 'm'));
    assert.match(r.stdout, new RegExp(`^cut ${size - badPosition} bytes`, 'm'));
    assert.equal(statSync(seg(dir, 1)).size, badPosition);
    assert.deepEqual(summary(validEntries(seg(dir, 1), 1)), before);
  });

  test('damage to synced data is refused with exit 1 and left byte for byte as it was', () => {
    const dir = tempDir();
    const { badPosition } = damagedWal(dir);
    const before = snapshot(dir);
    const r = corewal(['repair', dir, '--yes']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`wal-1\\.log: refused: .*at byte ${badPosition}`));
    assert.deepEqual(snapshot(dir), before);
    const j = json(corewal(['repair', dir, '--yes', '--json']));
    assert.deepEqual([j.refused, j.bytesCut, j.segments[1].action], [1, 0, 'refused']);
  });
});

describe('bench', () => {
  test('runs the suite through runBench: JSON shape, result files in --out', () => {
    const out = tempDir();
    const r = corewal(['bench', '--smoke', '--json', '--filter', '^no-such-case$', '--out', out]);
    assert.equal(r.code, 0, r.stderr);
    const j = json(r);
    assert.equal(typeof j.machine, 'string');
    assert.deepEqual(j.results, []);
    const files = readdirSync(out);
    assert.equal(files.filter((f) => f.endsWith('.json')).length, 1);
    assert.equal(files.filter((f) => f.endsWith('.md')).length, 1);
    const saved = JSON.parse(readFileSync(join(out, files.find((f) => f.endsWith('.json'))!), 'utf8'));
    assert.deepEqual([saved.smoke, saved.results], [true, []]);
    const none = tempDir();
    assert.equal(corewal(['bench', '--smoke', '--filter', '^no-such-case$', '--out', none, '--no-save']).code, 0);
    assert.deepEqual(readdirSync(none), []);
  });

  test('a real case runs: one line per case as npm run bench prints it, or its figures in JSON', () => {
    const text = corewal(['bench', '--smoke', '--filter', 'append \\(no sync\\) 100 B', '--no-save']);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /^append \(no sync\) \/ 100 B values: corewal=[\d.]+[kM]? records\/s, .*ratio corewal\/raw=[\d.]+ x$/m);
    const r = corewal(['bench', '--smoke', '--filter', 'append \\(no sync\\) 100 B', '--no-save', '--json']);
    const j = json(r);
    assert.equal(j.results.length, 1);
    assert.equal(j.results[0].group, 'append (no sync)');
    const rate = j.results[0].metrics.find((m: any) => m.unit === 'records/s');
    assert.ok(rate.median > 0 && rate.runs.length === 1);
  });
});

describe('in a terminal', () => {
  // Bar characters of the shades_classic preset.
  const BAR = /[█░]/;

  test('verify draws a progress bar on a terminal, never into a pipe or with --json', (t) => {
    const dir = tempDir();
    healthyWal(dir, 2, 40);
    const tty = corewalInTerminal(['verify', dir]);
    if (tty === null) return t.skip('util-linux script is not installed');
    assert.equal(tty.code, 0, tty.stdout);
    assert.match(tty.stdout, BAR);
    assert.match(tty.stdout, /verify .*100% \| 8\.\d\d MiB of 8\.\d\d MiB/);
    assert.match(tty.stdout, /OK: 2 segments, 80 valid entries/);
    const piped = corewal(['verify', dir]);
    assert.doesNotMatch(piped.stdout + piped.stderr, BAR);
    assert.match(piped.stdout, /OK: 2 segments/);
    const ttyJson = corewalInTerminal(['verify', dir, '--json'])!;
    assert.doesNotMatch(ttyJson.stdout, BAR);
    assert.doesNotMatch(corewalInTerminal(['inspect', dir, '--no-progress'])!.stdout, BAR);
    assert.match(corewalInTerminal(['inspect', dir])!.stdout, BAR);
  });

  test('what a person sees: output that scrolls past the bar stays intact, the bar is gone at the end', async (t) => {
    const dir = tempDir();
    healthyWal(dir, 1, 40);
    const r = await corewalScreen(['dump', dir], 12, 160);
    if (r === null) return t.skip('tmux is not installed');
    assert.equal(r.code, 0);
    const lines = r.screen.split('\n');
    // The last lines on screen are the last entries, in order, each whole: the bar, which
    // was drawn below them as they scrolled, neither overwrote one nor stayed behind.
    assert.deepEqual(lines.slice(-5).map((l) => / seq (\d+) /.exec(l)?.[1]), ['35', '36', '37', '38', '39']);
    assert.doesNotMatch(r.screen, BAR);
    const v = (await corewalScreen(['verify', dir], 12, 160))!;
    assert.equal(v.code, 0);
    assert.match(v.screen.split('\n').at(-1)!, /^OK: 1 segment, 40 valid entries/);
    assert.doesNotMatch(v.screen, BAR);
  });

  test('repair asks on a terminal: "n" leaves the segment alone (exit 1), "y" cuts the torn tail', (t) => {
    const dir = tempDir();
    const torn = tornWal(dir);
    const no = corewalInTerminal(['repair', dir], 'n\n');
    if (no === null) return t.skip('util-linux script is not installed');
    assert.match(no.stdout, /Cut 1 segment\(s\) back to their last valid record\? \[y\/N\]/);
    assert.equal(no.code, 1);
    assert.equal(statSync(seg(dir, 1)).size, torn.size);
    const yes = corewalInTerminal(['repair', dir], 'y\n')!;
    assert.equal(yes.code, 0, yes.stdout);
    assert.match(yes.stdout, /cut 126 bytes/);
    assert.equal(statSync(seg(dir, 1)).size, torn.validEnd);
    assert.equal(existsSync(seg(dir, 0)), true);
  });
});
