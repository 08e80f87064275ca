import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, unlinkSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { PerCoreWalConfig } from '../../manager/config.js';
import { PerCoreRecoveryManager, type PerCoreRecoveredState } from '../../recovery/recovery.js';
import { checkRecovered, type DemoCheck } from '../demo/check.js';
import { IngestFailed, ingestThenKill, percentiles, type IngestOutcome } from '../demo/ingest.js';
import { CliError, EXIT_FAILED, EXIT_OK, setExitCode } from '../errors.js';
import { formatBytes } from '../format.js';
import { parseNonNegativeInt, parsePositive, withJson, withProgress } from '../options.js';
import { printJson, printLine, warn } from '../output.js';
import { byteProgress, progressWanted, RECOVERY_PHASES } from '../progress.js';
import { DEFAULT_PATTERN } from '../segments.js';
import { findSegments } from '../segments.js';

interface DemoFlags {
  seconds: number;
  cores?: number;
  valueSize: number;
  producers: number;
  checkpointMs: number;
  keep?: boolean;
  json?: boolean;
  progress?: boolean;
  /** Hidden, for the test suite: damage the directory after the kill so that the check must fail. */
  inject?: 'drop-checkpoints';
}

export function registerDemo(program: Command): void {
  const cmd = program
    .command('demo')
    .description('the tour: ingest on every core through worker threads, SIGKILL mid-stream, recover, and check that every acknowledged record survived')
    .argument('[dir]', 'directory for the WAL and its checkpoints (default: a new temporary directory, removed afterwards)')
    .option('--seconds <s>', 'ingest time before the kill', parsePositive, 10)
    .option('--cores <n>', 'worker threads, one segment each (default: every core, or the cores of a WAL already in dir)', parseCount)
    .option('--value-size <bytes>', 'bytes per value', parseValueSize, 100)
    .option('--producers <n>', 'concurrent producers, each awaiting the durability of its put before the next', parseCount, 64)
    .option('--checkpoint-ms <ms>', 'milliseconds between checkpoints', parseCount, 1000)
    .option('--keep', 'keep the temporary directory, to look at with inspect / dump / verify / recover')
    .addOption(new Option('--inject <fault>', 'test hook: damage the directory after the kill').choices(['drop-checkpoints']).hideHelp());
  withJson(cmd, 'print the summary as one JSON document');
  withProgress(cmd);
  cmd.addHelpText('after', `
What it does: a child process runs a worker pool (one worker thread per core, each
owning one segment, group commit) with --producers concurrent producers, each putting
key k<n> with a value derived from the key and awaiting its durability; a checkpoint is
taken every --checkpoint-ms. After --seconds (and not before the first checkpoint has
completed) the child is killed with SIGKILL, mid-stream. The directory is then recovered
(newest valid checkpoint + the WAL after it) and every record acknowledged as durable is
looked up: present, with its value. Records that were in flight at the kill may or may
not have survived; those that did must hold their value too.

A directory that already holds a demo WAL is resumed: a new run writes new keys after
the old ones, and the old ones are left out of the check.

Exit status: 0 when nothing acknowledged was lost or wrong, 1 when something was (or the
ingest failed), 2 on a usage error.`);
  cmd.action(async (dir: string | undefined, flags: DemoFlags) => setExitCode(await runDemo(dir, flags)));
}

function parseCount(value: string): number {
  const n = parseNonNegativeInt(value);
  if (n < 1) throw new InvalidArgumentError(`expected a positive integer, got "${value}"`);
  return n;
}

function parseValueSize(value: string): number {
  const n = parseNonNegativeInt(value);
  if (n > 16 << 20) throw new InvalidArgumentError(`at most 16 MiB, got ${value}`);
  return n;
}

/** 1234567 → "1,234,567": counts are read by people here. */
const n = (x: number): string => x.toLocaleString('en-US');

interface Layout {
  root: string;
  walDir: string;
  checkpointDir: string;
  temporary: boolean;
}

function layout(dir: string | undefined): Layout {
  if (dir === undefined) {
    const root = mkdtempSync(join(tmpdir(), 'corewal-demo-'));
    return { root, walDir: join(root, 'wal'), checkpointDir: join(root, 'checkpoints'), temporary: true };
  }
  const root = resolve(dir);
  if (existsSync(root) && !statSync(root).isDirectory()) throw new CliError('NOT_A_DIRECTORY', `${dir} is not a directory`, { path: dir });
  mkdirSync(root, { recursive: true });
  return { root, walDir: join(root, 'wal'), checkpointDir: join(root, 'checkpoints'), temporary: false };
}

/** Cores of a WAL the directory already holds (a resumed demo), or null. */
function existingCores(walDir: string): number | null {
  if (!existsSync(walDir)) return null;
  const segs = findSegments(walDir, DEFAULT_PATTERN);
  return segs.length === 0 ? null : segs[segs.length - 1]!.coreId + 1;
}

export async function runDemo(dir: string | undefined, flags: DemoFlags): Promise<number> {
  const where = layout(dir);
  const found = existingCores(where.walDir);
  if (found !== null && flags.cores !== undefined && flags.cores !== found) {
    throw new CliError('USAGE', `${where.walDir} holds a WAL of ${found} cores; run with --cores ${found} or another directory`, { path: where.walDir });
  }
  const cores = flags.cores ?? found ?? availableParallelism();
  // Keys of this run are told apart from an earlier run's in the same directory.
  const prefix = `k${Date.now().toString(36)}-`;
  const bars = progressWanted(flags);
  // Ctrl-C: kill the ingest child at once (it would otherwise stop cleanly and the demo
  // would go on), remove the temporary directory, then die of the signal as usual.
  const abort = new AbortController();
  const onSigint = (): void => abort.abort();
  process.once('SIGINT', onSigint);
  let keep = flags.keep === true || !where.temporary;
  let interrupted = false;
  try {
    if (!flags.json) {
      const every = flags.checkpointMs % 1000 === 0 ? `${flags.checkpointMs / 1000} s` : `${flags.checkpointMs} ms`;
      printLine(`corewal demo: ${cores} worker thread${cores === 1 ? '' : 's'} (one segment each), ${flags.producers} producers, ${flags.valueSize}-byte values`);
      printLine(`a checkpoint every ${every}, SIGKILL after ${flags.seconds} s, in ${where.root}`);
    }
    const ingestBar = byteProgress('ingest ', flags.seconds, bars, 's');
    let ingest: IngestOutcome;
    try {
      ingest = await ingestThenKill({
        walDir: where.walDir, checkpointDir: where.checkpointDir, cores, producers: flags.producers, valueBytes: flags.valueSize,
        checkpointMs: flags.checkpointMs, seconds: flags.seconds, prefix, signal: abort.signal,
      }, (t) => ingestBar.update(Math.round(t.elapsed * 10) / 10,
        t.ready ? ` | ${n(t.acknowledged)} acknowledged | ${t.checkpoints} checkpoint${t.checkpoints === 1 ? '' : 's'}` : ' | starting workers'));
    } finally {
      ingestBar.stop();
    }
    if (flags.inject === 'drop-checkpoints') {
      for (const f of readdirSync(where.checkpointDir)) unlinkSync(join(where.checkpointDir, f));
    }

    const recoverBar = byteProgress('recover', 0, bars);
    const started = performance.now();
    let rec: PerCoreRecoveredState;
    try {
      rec = new PerCoreRecoveryManager(new PerCoreWalConfig(where.walDir, cores), {
        checkpointDir: where.checkpointDir,
        collectStateChanges: false,
        onProgress: (p) => {
          if (p.bytesTotal > 0) recoverBar.setTotal(p.bytesTotal);
          recoverBar.update(p.bytesDone, ` | ${RECOVERY_PHASES[p.phase]}`);
        },
      }).recover();
    } finally {
      recoverBar.stop();
    }
    const recoveryMs = performance.now() - started;
    // Recovery is synchronous: a Ctrl-C during it is seen only now.
    if (abort.signal.aborted) {
      interrupted = true;
      return EXIT_FAILED;
    }
    const check = checkRecovered(rec.state, ingest.acked, prefix, flags.valueSize);
    if (!check.ok) keep = true;
    const result = summary(flags, cores, where, keep, prefix, ingest, rec, recoveryMs, check);
    if (flags.json) printJson(result);
    else printText(result);
    return check.ok ? EXIT_OK : EXIT_FAILED;
  } catch (e) {
    if (e instanceof IngestFailed && e.code === 'ABORTED') {
      interrupted = true;
      return EXIT_FAILED;
    }
    if (e instanceof IngestFailed) {
      keep = true;
      throw new CliError('UNAVAILABLE', `${e.message}${keep ? `\nthe directory is kept: ${where.root}` : ''}`, { cause: e });
    }
    // Recovery refusing the directory (damage) is the demo failing: keep it to look at.
    keep = true;
    if (!flags.json) warn(`corewal: the directory is kept: ${where.root}`);
    throw e;
  } finally {
    process.removeListener('SIGINT', onSigint);
    if (!keep) rmSync(where.root, { recursive: true, force: true });
    if (interrupted) process.kill(process.pid, 'SIGINT');
  }
}

const round = (x: number, digits = 2): number => Math.round(x * 10 ** digits) / 10 ** digits;

function summary(
  flags: DemoFlags, cores: number, where: Layout, kept: boolean, prefix: string,
  ingest: IngestOutcome, rec: PerCoreRecoveredState, recoveryMs: number, check: DemoCheck,
) {
  const [p50, p99, max] = percentiles(ingest.latencyUs, [0.5, 0.99, 1]).map((us) => round(us / 1000, 3));
  const seconds = ingest.ingestMs / 1000;
  return {
    ok: check.ok,
    dir: where.root,
    kept,
    workerThreads: cores,
    cores,
    producers: flags.producers,
    valueSize: flags.valueSize,
    seconds: round(seconds, 3),
    recordsPerSecond: Math.round(ingest.acked.length / Math.max(seconds, 1e-9)),
    latencyMs: { p50: p50!, p99: p99!, max: max! },
    checkpoints: ingest.checkpoints.length,
    acknowledged: check.acknowledged,
    recovered: check.recovered,
    lost: check.lost,
    wrong: check.wrong,
    corrupt: check.corrupt,
    unacknowledgedRecovered: check.unacknowledgedRecovered,
    otherKeys: check.otherKeys,
    examples: check.examples,
    keyPrefix: prefix,
    injected: flags.inject ?? null,
    ingest: {
      startupMs: Math.round(ingest.startupMs), ms: Math.round(ingest.ingestMs), killedWith: 'SIGKILL', pid: ingest.pid,
      checkpointIds: ingest.checkpoints.map((c) => c.id),
    },
    recovery: {
      ms: round(recoveryMs, 1),
      checkpointId: rec.checkpointId === null ? null : String(rec.checkpointId),
      entriesReplayed: rec.entriesReplayed,
      keys: rec.state.size,
      finalEpoch: String(rec.finalEpoch),
      segments: rec.segments.map((s) => ({
        coreId: s.coreId, ended: s.ended, replayed: s.replayed, end: s.end,
        // Bytes past the last record replayed that are not the writer's preallocated zeros: the torn tail.
        tornBytes: s.ended === 'torn' || s.ended === 'debris' ? s.fileLen - s.end : 0,
      })),
      warnings: rec.warnings,
    },
  };
}

type Summary = ReturnType<typeof summary>;

function printText(s: Summary): void {
  const torn = s.recovery.segments.filter((x) => x.tornBytes > 0);
  const lines: [string, string][] = [
    ['ingest', `${s.seconds.toFixed(1)} s, ${n(s.acknowledged)} records acknowledged as durable: ${n(s.recordsPerSecond)} records/s`],
    ['commit latency', `p50 ${s.latencyMs.p50} ms, p99 ${s.latencyMs.p99} ms, max ${s.latencyMs.max} ms (put → durable)`],
    ['checkpoints', `${s.checkpoints} taken`],
    ['crash', `SIGKILL at ${s.seconds.toFixed(1)} s, mid-stream${s.injected === null ? '' : `; then (test hook) ${s.injected}`}`],
    ['recovery', `${s.recovery.checkpointId === null ? 'no checkpoint' : `checkpoint ${s.recovery.checkpointId}`} + ${n(s.recovery.entriesReplayed)} WAL entries in ${s.recovery.ms} ms; ${torn.length === 0 ? 'no torn tail' : `torn tail dropped on ${torn.map((x) => `core ${x.coreId} (${formatBytes(x.tornBytes)})`).join(', ')}`}`],
    ['recovered', `${n(s.recovered)} records (${n(s.recovered - s.unacknowledgedRecovered)} acknowledged + ${n(s.unacknowledgedRecovered)} durable but not yet acknowledged at the kill)`],
    ['lost', `${n(s.lost)} of ${n(s.acknowledged)} acknowledged records${s.wrong + s.corrupt > 0 ? `; ${n(s.wrong)} with a wrong value; ${n(s.corrupt)} corrupt` : ''}`],
  ];
  const w = Math.max(...lines.map(([k]) => k.length));
  printLine();
  for (const [k, v] of lines) printLine(`${k.padEnd(w)}  ${v}`);
  printLine();
  if (s.ok) {
    printLine('OK: every record acknowledged as durable survived the SIGKILL with its value.');
  } else {
    printLine('FAILED: records acknowledged as durable are missing or wrong after recovery.');
    for (const [what, keys] of Object.entries(s.examples)) if (keys.length > 0) printLine(`  ${what}: ${keys.join(', ')}`);
  }
  if (s.kept) {
    const wal = join(s.dir, 'wal'), cp = join(s.dir, 'checkpoints');
    printLine(`Look around: corewal inspect ${wal} --checkpoint-dir ${cp}`);
    printLine(`             corewal recover ${wal} ${cp}`);
  } else {
    printLine(`(${s.dir} removed; run "corewal demo <dir>" or add --keep to look at the files)`);
  }
}
