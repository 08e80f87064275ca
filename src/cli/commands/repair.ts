import { statSync } from 'node:fs';
import { basename } from 'node:path';
import type { Command } from 'commander';
import { CoreWalWriter } from '../../writer/writer.js';
import { CliError, EXIT_FAILED, EXIT_OK, setExitCode } from '../errors.js';
import { formatBytes, table } from '../format.js';
import { withJson, withPattern, withProgress, type CommonFlags } from '../options.js';
import { confirm, printJson, printLine, warn } from '../output.js';
import { byteProgress, progressWanted } from '../progress.js';
import { badMessage, scanAll, tornBytes, type ScannedSegment } from '../scan-all.js';
import { findSegments } from '../segments.js';

interface RepairFlags extends CommonFlags {
  yes?: boolean;
  dryRun?: boolean;
}

type Action = 'none' | 'cut' | 'would-cut' | 'refused' | 'declined';

interface Outcome {
  coreId: number;
  file: string;
  path: string;
  tail: string;
  validEnd: number;
  sizeBefore: number;
  sizeAfter: number;
  bytesCut: number;
  action: Action;
  message: string | null;
}

export function registerRepair(program: Command): void {
  const cmd = program
    .command('repair')
    .description('cut torn tails and crash debris back to the last valid record; never removes a valid record, refuses damage to synced data')
    .argument('<dir>', 'WAL directory')
    .option('-y, --yes', 'do not ask for confirmation (required when stdin is not a terminal)')
    .option('--dry-run', 'show what would be cut and change nothing');
  withPattern(cmd);
  withJson(cmd, 'print what was (or would be) cut as one JSON document');
  withProgress(cmd);
  cmd.addHelpText('after', `
Run it only while no writer has the WAL open. A segment whose bad bytes lie before data
that had been synced (damage) is left untouched and reported: cutting it would lose
records that were promised durable; recover it with a recovery mode that says so.

Exit status: 0 when every segment is clean afterwards (or would be, with --dry-run),
1 when a damaged segment was refused or the repair was declined, 2 on a usage error or
when confirmation is needed but stdin is not a terminal.`);
  cmd.action(async (dir: string, flags: RepairFlags) => setExitCode(await runRepair(dir, flags)));
}

function plan({ ref, scan }: ScannedSegment): Outcome {
  const base = {
    coreId: ref.coreId, file: basename(ref.path), path: ref.path, tail: scan.tail, validEnd: scan.validEnd,
    sizeBefore: scan.fileLen, sizeAfter: scan.fileLen, bytesCut: 0, message: badMessage(scan),
  };
  if (scan.tail === 'clean') return { ...base, action: 'none' };
  if (scan.tail === 'damaged') return { ...base, action: 'refused' };
  return { ...base, action: 'would-cut', bytesCut: tornBytes(scan), sizeAfter: scan.validEnd };
}

export async function runRepair(dir: string, flags: RepairFlags): Promise<number> {
  const segments = findSegments(dir, flags.pattern);
  const total = segments.reduce((s, r) => s + r.size, 0);
  const bar = byteProgress('repair', total, progressWanted(flags) && segments.length > 0);
  let outcomes: Outcome[];
  try {
    outcomes = scanAll(segments, bar).map(plan);
  } finally {
    bar.stop();
  }
  const toCut = outcomes.filter((o) => o.action === 'would-cut');
  if (toCut.length > 0 && !flags.dryRun && !flags.yes) {
    if (process.stdin.isTTY !== true) {
      throw new CliError('NO_CONFIRMATION',
        `repair would cut ${toCut.reduce((s, o) => s + o.bytesCut, 0)} bytes from ${toCut.length} segment(s) of ${dir}; stdin is not a terminal to confirm on, pass --yes`,
        { path: dir });
    }
    for (const o of toCut) warn(`${o.file}: cut ${o.bytesCut} bytes after byte ${o.validEnd} (${o.tail})`);
    if (!(await confirm(`Cut ${toCut.length} segment(s) back to their last valid record?`))) {
      for (const o of toCut) Object.assign(o, { action: 'declined', bytesCut: 0, sizeAfter: o.sizeBefore });
    }
  }
  if (!flags.dryRun) for (const o of toCut) if (o.action === 'would-cut') cut(o);
  report(dir, outcomes, flags);
  return outcomes.some((o) => o.action === 'refused' || o.action === 'declined') ? EXIT_FAILED : EXIT_OK;
}

function cut(o: Outcome): void {
  // A writer that appended since the scan would make validEnd stale: refuse rather than guess.
  const now = statSync(o.path).size;
  if (now !== o.sizeBefore) {
    o.action = 'refused';
    o.bytesCut = 0;
    o.sizeAfter = now;
    o.message = `${o.path} changed size from ${o.sizeBefore} to ${now} bytes during the repair; is a writer running? Nothing was cut`;
    return;
  }
  // openAt re-reads up to validEnd, refuses if it is not the end of valid records, and
  // truncates and fdatasyncs before returning.
  CoreWalWriter.openAt(o.coreId, o.path, o.validEnd, { preallocate: 0 }).close();
  o.sizeAfter = statSync(o.path).size;
  o.bytesCut = o.sizeBefore - o.sizeAfter;
  o.action = 'cut';
}

function report(dir: string, outcomes: Outcome[], flags: RepairFlags): void {
  const bytesCut = outcomes.reduce((s, o) => s + (o.action === 'cut' || o.action === 'would-cut' ? o.bytesCut : 0), 0);
  if (flags.json) {
    printJson({
      dir, pattern: flags.pattern, dryRun: flags.dryRun === true, bytesCut,
      refused: outcomes.filter((o) => o.action === 'refused').length, segments: outcomes,
    });
    return;
  }
  if (outcomes.length === 0) {
    printLine(`${dir}: no segments matching ${flags.pattern}`);
    return;
  }
  const rows = outcomes.map((o) => [
    String(o.coreId), o.file, o.tail, String(o.sizeBefore), String(o.sizeAfter), String(o.bytesCut), o.action,
  ]);
  printLine(table(['core', 'file', 'tail', 'size before', 'size after', 'bytes cut', 'action'], rows,
    ['right', 'left', 'left', 'right', 'right', 'right', 'left']));
  for (const o of outcomes) {
    if (o.action === 'refused') warn(`${o.file}: refused: ${o.message}`);
  }
  printLine(`${flags.dryRun ? 'would cut' : 'cut'} ${bytesCut} bytes (${formatBytes(bytesCut)}) in total`);
}
