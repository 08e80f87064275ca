import { statSync } from 'node:fs';
import { basename, resolve } from 'node:path';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { RECOVERY_MODES, type RecoveryMode } from '../../recovery/cursor.js';
import { PerCoreRecoveryManager, type PerCoreRecoveredState, type RecoveryProgress } from '../../recovery/recovery.js';
import { PerCoreWalConfig } from '../../manager/config.js';
import { PerCoreWalError } from '../../errors/errors.js';
import { checkpointDirExists, newestValid, listCheckpoints } from '../checkpoints.js';
import { listCheckpointFiles } from '../../checkpoint/files.js';
import { realFs } from '../../io/fs.js';
import { CliError, EXIT_FAILED, EXIT_OK, setExitCode } from '../errors.js';
import { formatBytes, showBytes, table } from '../format.js';
import { parsePositive, withJson, withPattern, withProgress, type CommonFlags } from '../options.js';
import { confirm, LineWriter, printJson, printLine, warn } from '../output.js';
import { byteProgress, progressWanted, RECOVERY_PHASES } from '../progress.js';
import { findSegments } from '../segments.js';

interface RecoverFlags extends CommonFlags {
  mode: RecoveryMode;
  cores?: number;
  repair?: boolean;
  yes?: boolean;
  state?: boolean;
}

export function registerRecover(program: Command): void {
  const cmd = program
    .command('recover')
    .description('rebuild the state from the newest valid checkpoint plus the WAL after it, in a chosen recovery mode, and show what was rebuilt')
    .argument('<wal-dir>', 'WAL directory')
    .argument('<checkpoint-dir>', 'checkpoint directory (a missing one holds no checkpoints: the WAL alone is replayed)')
    .addOption(new Option('--mode <mode>', 'how bad records are treated (RocksDB\'s meanings, per segment)').choices([...RECOVERY_MODES]).default('tolerateCorruptedTail'))
    .option('--cores <n>', 'number of cores (segments); default: one more than the highest core id among the segment files', parseCores)
    .option('--state', 'also print the rebuilt state, every key and value, in key order (as UTF-8 where printable, hex otherwise)')
    .option('--repair', 'after recovering, cut every segment where this mode stopped reading it (asks first)')
    .option('-y, --yes', 'with --repair: do not ask (required when stdin is not a terminal)');
  withPattern(cmd);
  withJson(cmd, 'print what was rebuilt as one JSON document');
  withProgress(cmd);
  cmd.addHelpText('after', `
Modes:
  tolerateCorruptedTail  (default) drop torn tails and crash debris; fail on damage to synced data
  absoluteConsistency    fail on any bad byte, a torn tail included
  pointInTime            stop each segment at its first bad record, and replay no epoch
                         that some core lost, so the cores stay consistent
  skipAnyCorrupted       skip bad records and go on at the next valid one

Recovery only reads. --repair then writes: it cuts each segment at the end of what was
replayed, durably (torn tails, debris, preallocated zeros; with pointInTime also the
epochs another core lost; with skipAnyCorrupted bad records in the middle stay). Run it
only while no writer has the WAL open. "corewal repair" is the conservative alternative:
it cuts only torn tails and crash debris, whatever the mode.

Exit status: 0 when recovery succeeded, 1 when it failed (corruption the mode does not
accept, or an I/O error), when it had to skip an invalid checkpoint (the state it
rebuilt from an older one is still shown), or when a repair was declined; 2 on a
usage error.`);
  cmd.action(async (walDir: string, cpDir: string, flags: RecoverFlags) => setExitCode(await runRecover(walDir, cpDir, flags)));
}

function parseCores(value: string): number {
  const n = parsePositive(value);
  if (!Number.isInteger(n) || n > 65536) throw new InvalidArgumentError(`expected an integer in [1, 65536], got "${value}"`);
  return n;
}

/** Where the core count came from, so a surprising one can be traced. */
type CoresFrom = 'option' | 'segments' | 'checkpoint';

interface SegmentRow {
  coreId: number;
  file: string;
  path: string;
  size: number;
  start: number;
  end: number;
  entries: number;
  replayed: number;
  ended: string;
  problem: { kind: string; position: number; reason: string } | null;
  skippedBytes: number;
  lastEpoch: string | null;
  nextSequence: string;
  /** Bytes from `end` to the end of the file: what `--repair` cuts. Zeros only when `ended` is clean. */
  bytesNotReplayed: number;
}

interface RepairRow {
  coreId: number;
  file: string;
  sizeBefore: number;
  sizeAfter: number;
  bytesCut: number;
}

export async function runRecover(walDir: string, cpDir: string, flags: RecoverFlags): Promise<number> {
  const segments = findSegments(walDir, flags.pattern);
  const cpExists = checkpointDirExists(cpDir);
  let cores: number;
  let coresFrom: CoresFrom;
  if (flags.cores !== undefined) {
    cores = flags.cores;
    coresFrom = 'option';
  } else if (segments.length > 0) {
    cores = segments[segments.length - 1]!.coreId + 1;
    coresFrom = 'segments';
  } else {
    // Every segment may have been reset to nothing and removed: the checkpoint still knows.
    const n = newestValid(listCheckpoints(cpDir))?.walPositions?.length ?? 0;
    if (n === 0) {
      throw new CliError('USAGE', `no segment matching ${flags.pattern} in ${walDir} and no checkpoint that tells the number of cores: pass --cores`, { path: walDir });
    }
    cores = n;
    coresFrom = 'checkpoint';
  }
  const beyond = segments.filter((s) => s.coreId >= cores);
  if (beyond.length > 0) {
    warn(`corewal: ignoring ${beyond.map((s) => basename(s.path)).join(', ')}: --cores ${cores} covers core ids 0 to ${cores - 1}`);
  }
  const missing: number[] = [];
  for (let c = 0; c < cores; c++) if (!segments.some((s) => s.coreId === c)) missing.push(c);
  if (!cpExists && !flags.json) warn(`corewal: ${cpDir} does not exist: no checkpoint, the WAL alone is replayed`);

  const config = new PerCoreWalConfig(resolve(walDir), cores, { segmentPattern: flags.pattern });
  const bar = byteProgress('recover', 0, progressWanted(flags));
  const onProgress = (p: RecoveryProgress): void => {
    if (p.bytesTotal > 0) bar.setTotal(p.bytesTotal);
    bar.update(p.bytesDone, ` | ${RECOVERY_PHASES[p.phase]}`);
  };
  const manager = new PerCoreRecoveryManager(config, {
    checkpointDir: resolve(cpDir), mode: flags.mode, onProgress,
    // The state is shown by its size, not change by change: no list of changes to keep.
    collectStateChanges: false,
  });
  const head = {
    walDir: resolve(walDir), checkpointDir: resolve(cpDir), checkpointDirExists: cpExists, mode: flags.mode,
    cores, coresFrom, pattern: flags.pattern, missingSegments: missing,
  };
  const started = performance.now();
  let rec: PerCoreRecoveredState;
  try {
    rec = manager.recover();
  } catch (e) {
    bar.stop();
    if (!(e instanceof PerCoreWalError) || e.code === 'INVALID_ARGUMENT') throw e;
    return failed(head, e, flags);
  }
  bar.stop();
  const ms = performance.now() - started;
  const rows = segmentRows(rec, config);
  let repair: RepairRow[] | null = null;
  let code = EXIT_OK;
  if (flags.repair) {
    const r = await repairSegments(manager, rows, flags, walDir);
    if (r === 'declined') code = EXIT_FAILED;
    else repair = r;
  }
  // Recovery tries the newest checkpoint first and stops at the first that loads: every
  // newer file was skipped as invalid. A crash never leaves one (checkpoints are written
  // to a temporary name and renamed), so that is corruption, and what only it held may be
  // gone: the state is shown, and the exit status says so.
  const skipped = cpExists
    ? listCheckpointFiles(resolve(cpDir), realFs).filter((f) => rec.checkpointId === null || f.id > rec.checkpointId).map((f) => ({ id: String(f.id), file: basename(f.path) }))
    : [];
  if (skipped.length > 0) code = EXIT_FAILED;
  const result = { ok: code === EXIT_OK, ...summary(rec, head, rows, ms, repair), skippedCheckpoints: skipped };
  const state = flags.state ? stateRows(rec) : undefined;
  if (flags.json) printJson(state === undefined ? result : { ...result, state });
  else printText(result, rec, state);
  if (flags.repair && repair === null) warn('corewal: repair declined; nothing was cut');
  if (skipped.length > 0) {
    warn(`corewal: checkpoint ${skipped.map((c) => c.id).join(', ')} ${skipped.length === 1 ? 'does' : 'do'} not load and ${skipped.length === 1 ? 'was' : 'were'} skipped: a crash never leaves an invalid checkpoint, so this is corruption, and records only ${skipped.length === 1 ? 'it' : 'they'} held may be missing ("corewal verify --checkpoint-dir" says why)`);
  }
  return code;
}

function segmentRows(rec: PerCoreRecoveredState, config: PerCoreWalConfig): SegmentRow[] {
  return rec.segments.map((s) => ({
    coreId: s.coreId, file: basename(config.segmentPath(s.coreId)), path: s.path, size: s.fileLen, start: s.start, end: s.end,
    entries: s.entries, replayed: s.replayed, ended: s.ended,
    problem: s.bad === null ? null : { kind: s.bad.kind, position: s.bad.position, reason: s.bad.reason },
    skippedBytes: s.skippedBytes, lastEpoch: s.lastEpoch === null ? null : String(s.lastEpoch), nextSequence: String(s.nextSequence),
    bytesNotReplayed: Math.max(0, s.fileLen - s.end),
  }));
}

type Head = {
  walDir: string; checkpointDir: string; checkpointDirExists: boolean; mode: RecoveryMode; cores: number; coresFrom: CoresFrom;
  pattern: string; missingSegments: number[];
};

function summary(rec: PerCoreRecoveredState, head: Head, segments: SegmentRow[], ms: number, repair: RepairRow[] | null) {
  let stateBytes = 0;
  for (const [k, v] of rec.state.entries()) stateBytes += k.length + v.length;
  const cp = rec.checkpoint;
  return {
    ...head,
    checkpoint: cp === null ? null : {
      id: String(cp.id), file: basename(cp.path), epoch: String(cp.epoch), incremental: cp.isIncremental,
      parentId: cp.parentId === null ? null : String(cp.parentId), keys: cp.keyCount, sizeBytes: cp.sizeBytes,
      created: new Date(Number(cp.timestamp)).toISOString(),
    },
    keys: rec.state.size,
    stateBytes,
    entriesReplayed: rec.entriesReplayed,
    finalEpoch: String(rec.finalEpoch),
    sourceOffsets: Object.fromEntries([...rec.sourceOffsets].map(([k, v]) => [k, String(v)])),
    watermark: rec.watermark === null ? null : String(rec.watermark),
    walPositions: rec.walPositions,
    nextSequences: rec.nextSequences.map(String),
    segments,
    warnings: rec.warnings,
    ms: Math.round(ms * 10) / 10,
    repair: repair === null ? null : { bytesCut: repair.reduce((s, r) => s + r.bytesCut, 0), segments: repair },
  };
}

type Summary = ReturnType<typeof summary>;

function failed(head: Head, e: PerCoreWalError, flags: RecoverFlags): number {
  const error = {
    code: e.code, message: e.message, path: e.path ?? null, position: e.position ?? null, coreId: e.coreId ?? null,
  };
  if (flags.json) {
    printJson({ ok: false, ...head, error });
  } else {
    warn(`corewal: recovery of ${head.walDir} failed in mode ${head.mode}: ${e.code}: ${e.message}`);
    if (e.code !== 'IO') warn(`corewal: "corewal verify ${head.walDir}" names every bad record`);
  }
  return EXIT_FAILED;
}

/**
 * Cuts each segment where recovery stopped reading it. Cutting preallocated zeros loses
 * nothing, so only a cut of anything else is asked about.
 */
async function repairSegments(manager: PerCoreRecoveryManager, rows: SegmentRow[], flags: RecoverFlags, walDir: string): Promise<RepairRow[] | 'declined'> {
  const lossy = rows.filter((r) => r.bytesNotReplayed > 0 && r.ended !== 'clean');
  if (lossy.length > 0 && !flags.yes) {
    const bytes = lossy.reduce((s, r) => s + r.bytesNotReplayed, 0);
    if (process.stdin.isTTY !== true) {
      throw new CliError('NO_CONFIRMATION',
        `--repair would cut ${bytes} bytes that are not zero padding from ${lossy.length} segment(s) of ${walDir}; stdin is not a terminal to confirm on, pass --yes`,
        { path: walDir });
    }
    for (const r of lossy) warn(`${r.file}: cut ${r.bytesNotReplayed} bytes after byte ${r.end} (${r.ended})`);
    if (!(await confirm(`Cut ${lossy.length} segment(s) where ${flags.mode} recovery stopped?`))) return 'declined';
  }
  const sizes = rows.map((r) => statSync(r.path, { throwIfNoEntry: false })?.size ?? 0);
  // repairAllSegments reads the WAL again and cuts where that read ends: the same place as
  // the recovery above unless a writer appended meanwhile, which it must not.
  manager.repairAllSegments();
  return rows.map((r, i) => {
    const after = statSync(r.path, { throwIfNoEntry: false })?.size ?? 0;
    return { coreId: r.coreId, file: r.file, sizeBefore: sizes[i]!, sizeAfter: after, bytesCut: sizes[i]! - after };
  });
}

/** The state in key order (byte order, as recovery's maps are not ordered). */
function stateRows(rec: PerCoreRecoveredState): { key: string; keyEncoding: string; value: string; valueEncoding: string }[] {
  const pairs = [...rec.state.entries()].sort(([a], [b]) => Buffer.compare(a, b));
  return pairs.map(([k, v]) => {
    const key = showBytes(k), value = showBytes(v);
    return { key: key.text, keyEncoding: key.encoding, value: value.text, valueEncoding: value.encoding };
  });
}

function printText(s: Summary & { skippedCheckpoints: unknown[] }, rec: PerCoreRecoveredState, state?: ReturnType<typeof stateRows>): void {
  printLine(`recovered ${s.walDir} (${s.cores} core${s.cores === 1 ? '' : 's'}, mode ${s.mode}) in ${s.ms} ms`);
  printLine();
  const cp = s.checkpoint;
  const fields: [string, string][] = [
    ['checkpoint', cp === null
      ? `none${s.checkpointDirExists ? ` valid in ${s.checkpointDir}` : ` (${s.checkpointDir} does not exist)`}: the WAL alone was replayed`
      : `${cp.id} (${cp.file}: epoch ${cp.epoch}, ${cp.incremental ? `incremental on ${cp.parentId}` : 'full'}, ${cp.keys} keys, ${formatBytes(cp.sizeBytes)})`],
    ['state', `${s.keys} keys, ${formatBytes(s.stateBytes)} of keys and values`],
    ['replayed', `${s.entriesReplayed} WAL entries`],
    ['final epoch', s.finalEpoch],
    ['source offsets', Object.keys(s.sourceOffsets).length === 0 ? 'none' : Object.entries(s.sourceOffsets).map(([k, v]) => `${k}=${v}`).join(', ')],
    ['watermark', s.watermark ?? 'none'],
    ['next sequences', s.nextSequences.join(', ')],
  ];
  const w = Math.max(...fields.map(([k]) => k.length));
  for (const [k, v] of fields) printLine(`${k.padEnd(w)}  ${v}`);
  printLine();
  const rows = s.segments.map((r) => [
    String(r.coreId), r.file, String(r.size), String(r.start), String(r.end), String(r.entries), String(r.replayed),
    r.ended, r.problem === null ? '' : `${r.problem.kind} at byte ${r.problem.position}`,
  ]);
  printLine(table(['core', 'file', 'size', 'from', 'to', 'entries', 'replayed', 'ended', 'problem'], rows,
    ['right', 'left', 'right', 'right', 'right', 'right', 'right', 'left', 'left']));
  if (s.missingSegments.length > 0) printLine(`\nno segment file for core(s) ${s.missingSegments.join(', ')}: read as empty`);
  if (rec.warnings.length > 0) {
    printLine();
    for (const m of rec.warnings) printLine(`note: ${m}`);
  }
  if (s.repair !== null) {
    printLine();
    printLine(table(['core', 'file', 'size before', 'size after', 'bytes cut'],
      s.repair.segments.map((r) => [String(r.coreId), r.file, String(r.sizeBefore), String(r.sizeAfter), String(r.bytesCut)]),
      ['right', 'left', 'right', 'right', 'right']));
    printLine(`repair: cut ${s.repair.bytesCut} bytes (${formatBytes(s.repair.bytesCut)}) in total`);
  }
  if (state !== undefined) {
    printLine();
    printLine(`state (${state.length} keys):`);
    const out = new LineWriter();
    const show = (text: string, enc: string): string => (enc === 'utf8' ? JSON.stringify(text) : `0x${text}`);
    for (const r of state) out.line(`${show(r.key, r.keyEncoding)} = ${show(r.value, r.valueEncoding)}`);
    out.flush();
  }
}
