import { basename } from 'node:path';
import type { Command } from 'commander';
import type { PerCoreWalEntry } from '../../entry/entry.js';
import { listBadRecords, type BadSeverity } from '../bad-records.js';
import { EXIT_FAILED, EXIT_OK, setExitCode } from '../errors.js';
import { formatBytes } from '../format.js';
import { withJson, withPattern, withProgress, type CommonFlags } from '../options.js';
import { printJson, printLine } from '../output.js';
import { byteProgress, progressWanted } from '../progress.js';
import { listCheckpoints } from '../checkpoints.js';
import { scanAll } from '../scan-all.js';
import { findSegments, type SegmentRef } from '../segments.js';

interface VerifyFlags extends CommonFlags {
  allowTorn?: boolean;
  checkpointDir?: string;
}

export type ProblemSeverity = BadSeverity | 'order' | 'checkpoint';

export interface Problem {
  file: string;
  path: string;
  /** -1 for a checkpoint file. */
  coreId: number;
  position: number;
  code: string;
  severity: ProblemSeverity;
  message: string;
}

export function registerVerify(program: Command): void {
  const cmd = program
    .command('verify')
    .description('check every record of every segment (length, CRC-32C, payload, per-core order) and name the file and byte of each problem')
    .argument('<dir>', 'WAL directory')
    .option('--allow-torn', 'accept torn tails and crash debris past the last synced byte (what recovery cuts anyway); fail only on damage');
  withPattern(cmd);
  cmd.option('--checkpoint-dir <dir>', 'also validate every checkpoint there, each with the chain of checkpoints it depends on');
  withJson(cmd, 'print the report as one JSON document');
  withProgress(cmd);
  cmd.addHelpText('after', `
Severities: torn (a torn last record), debris (bad bytes appended after the last sync,
valid records after them), damage (data that had been synced is unreadable), order
(a sequence, epoch or timestamp going backwards within a core), checkpoint (a
checkpoint file that does not validate, or depends on one that does not).

Exit status: 0 when there is no problem (with --allow-torn: no damage, order or
checkpoint problem), 1 otherwise, 2 on a usage error.`);
  cmd.action((dir: string, flags: VerifyFlags) => setExitCode(runVerify(dir, flags)));
}

/** Per-core order checks on the valid prefix (SPEC invariant 4). */
class OrderCheck {
  private ref: SegmentRef | null = null;
  private prev: PerCoreWalEntry | null = null;
  constructor(private readonly problems: Problem[]) {}

  visit(ref: SegmentRef, e: PerCoreWalEntry, position: number): void {
    if (ref !== this.ref) { this.ref = ref; this.prev = null; }
    const p = this.prev;
    this.prev = e;
    if (p === null) return;
    const report = (what: string): void => {
      this.problems.push({
        file: basename(ref.path), path: ref.path, coreId: ref.coreId, position, code: 'ORDER', severity: 'order',
        message: `${what} in ${ref.path} at byte ${position}`,
      });
    };
    if (e.sequence <= p.sequence) report(`sequence ${e.sequence} does not follow ${p.sequence}`);
    if (e.epoch < p.epoch) report(`epoch ${e.epoch} is below the previous entry's ${p.epoch}`);
    if (e.timestampNs < p.timestampNs) report(`timestamp ${e.timestampNs} is below the previous entry's ${p.timestampNs}`);
  }
}

export function runVerify(dir: string, flags: VerifyFlags): number {
  const segments = findSegments(dir, flags.pattern);
  const total = segments.reduce((s, r) => s + r.size, 0);
  const problems: Problem[] = [];
  const order = new OrderCheck(problems);
  const bar = byteProgress('verify', total, progressWanted(flags) && segments.length > 0);
  const perSegment: { coreId: number; file: string; size: number; entries: number; validEnd: number; tail: string; problems: number; truncated: boolean }[] = [];
  try {
    for (const { ref, scan } of scanAll(segments, bar, { entry: (ref, e, pos) => order.visit(ref, e, pos) })) {
      let truncated = false;
      if (scan.tail !== 'clean') {
        const list = listBadRecords(ref, scan.validEnd);
        truncated = list.truncated;
        for (const b of list.bad) {
          const skipped = b.resumesAt - b.position;
          const where = b.resumesAt >= scan.fileLen ? `no valid record in the ${skipped} bytes to the end` : `next valid record at byte ${b.resumesAt}`;
          problems.push({
            file: basename(ref.path), path: ref.path, coreId: ref.coreId, position: b.position, code: b.code, severity: b.severity,
            message: `${b.message} (${b.severity}; ${where})`,
          });
        }
      }
      const mine = problems.filter((p) => p.path === ref.path).length;
      perSegment.push({
        coreId: ref.coreId, file: basename(ref.path), size: scan.fileLen, entries: scan.entries,
        validEnd: scan.validEnd, tail: scan.tail, problems: mine, truncated,
      });
    }
  } finally {
    bar.stop();
  }
  problems.sort((a, b) => a.coreId - b.coreId || a.position - b.position);
  const checkpoints = flags.checkpointDir === undefined ? null : listCheckpoints(flags.checkpointDir, { mustExist: true });
  for (const c of checkpoints?.checkpoints ?? []) {
    if (c.valid) continue;
    problems.push({
      file: c.file, path: c.path, coreId: -1, position: checkpointErrorPosition(c.path, c.error), code: 'CHECKPOINT_INVALID', severity: 'checkpoint',
      message: `checkpoint ${c.id} does not load: ${c.error}`,
    });
  }
  const failing = problems.filter((p) => !(flags.allowTorn && (p.severity === 'torn' || p.severity === 'debris')));
  const ok = failing.length === 0;
  if (flags.json) {
    printJson({
      ok, dir, pattern: flags.pattern, allowTorn: flags.allowTorn === true, bytes: total, segments: perSegment,
      ...(checkpoints === null ? {} : { checkpointDir: checkpoints.dir, checkpoints: checkpoints.checkpoints }),
      problems,
    });
  } else {
    for (const p of problems) printLine(`${p.file}: byte ${p.position}: ${p.code} [${p.severity}] ${p.message}`);
    const entries = perSegment.reduce((s, x) => s + x.entries, 0);
    const cps = checkpoints === null ? '' : `, ${checkpoints.checkpoints.filter((c) => c.valid).length} of ${checkpoints.checkpoints.length} checkpoint(s) valid`;
    const summary = `${segments.length} segment${segments.length === 1 ? '' : 's'}, ${entries} valid entries, ${formatBytes(total)}${cps}`;
    if (ok && problems.length === 0) printLine(`OK: ${summary} in ${dir}`);
    else if (ok) printLine(`OK (--allow-torn): ${summary}; ${problems.length} repairable problem(s) past the last sync`);
    else printLine(`FAILED: ${failing.length} problem(s) in ${new Set(failing.map((p) => p.path)).size} of ${segments.length + (checkpoints?.checkpoints.length ?? 0)} file(s): ${summary}`);
  }
  return ok ? EXIT_OK : EXIT_FAILED;
}

/**
 * The library names the byte in its message ("<path> at byte N") where it knows it. A
 * checkpoint that fails because a parent does not load has no bad byte of its own: 0.
 */
function checkpointErrorPosition(path: string, error: string | null): number {
  const at = (error ?? '').indexOf(`${path} at byte `);
  if (at < 0) return 0;
  const m = /^(\d+)/.exec(error!.slice(at + path.length + ' at byte '.length));
  return m === null ? 0 : Number(m[1]);
}
