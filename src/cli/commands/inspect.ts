import { basename } from 'node:path';
import type { Command } from 'commander';
import { EXIT_FAILED, EXIT_OK, setExitCode } from '../errors.js';
import { formatBytes, formatRange, table } from '../format.js';
import { withJson, withPattern, withProgress, type CommonFlags } from '../options.js';
import { printJson, printLine } from '../output.js';
import { byteProgress, progressWanted } from '../progress.js';
import { badCode, badMessage, scanAll, tornBytes, type ScannedSegment } from '../scan-all.js';
import { findSegments } from '../segments.js';

type InspectFlags = CommonFlags;

export function registerInspect(program: Command): void {
  const cmd = program
    .command('inspect')
    .description('show every segment of a WAL directory: entries, epoch and sequence ranges, valid end, torn bytes, tail state')
    .argument('<dir>', 'WAL directory');
  withPattern(cmd);
  withJson(cmd, 'print the segments as one JSON document');
  withProgress(cmd);
  // HOOK(checkpoint): when CheckpointStore (src/checkpoint/store.ts, branch `checkpoint`)
  // is on main, add `--checkpoint-dir <dir>` here and list its checkpoints (id, epoch,
  // WAL positions, valid or not) under the segments, in the table and in the JSON.
  cmd.addHelpText('after', `
Exit status: 0 when every segment is clean or ends in a repairable torn tail / crash
debris, 1 when a segment has damage to synced data, 2 on a usage error.`);
  cmd.action((dir: string, flags: InspectFlags) => setExitCode(runInspect(dir, flags)));
}

export function runInspect(dir: string, flags: InspectFlags): number {
  const segments = findSegments(dir, flags.pattern);
  const total = segments.reduce((s, r) => s + r.size, 0);
  const bar = byteProgress('inspect', total, progressWanted(flags) && segments.length > 0);
  let scanned: ScannedSegment[];
  try {
    scanned = scanAll(segments, bar);
  } finally {
    bar.stop();
  }
  const damaged = scanned.some((s) => s.scan.tail === 'damaged');
  const rows = scanned.map(segmentJson);
  if (flags.json) {
    printJson({
      dir, pattern: flags.pattern, segments: rows,
      totals: {
        segments: rows.length,
        bytes: total,
        entries: rows.reduce((s, r) => s + r.entries, 0),
        tornBytes: rows.reduce((s, r) => s + r.tornBytes, 0),
        damaged: rows.filter((r) => r.tail === 'damaged').length,
      },
    });
  } else {
    printText(dir, flags.pattern, scanned);
  }
  return damaged ? EXIT_FAILED : EXIT_OK;
}

function segmentJson({ ref, scan }: ScannedSegment) {
  const f = scan.first, l = scan.last;
  return {
    coreId: ref.coreId,
    file: basename(ref.path),
    path: ref.path,
    size: scan.fileLen,
    entries: scan.entries,
    epochFirst: f === null ? null : String(f.epoch),
    epochLast: l === null ? null : String(l.epoch),
    sequenceFirst: f === null ? null : String(f.sequence),
    sequenceLast: l === null ? null : String(l.sequence),
    validEnd: scan.validEnd,
    tornBytes: tornBytes(scan),
    // Preallocated zeros after the last record of a clean segment: not data, not damage.
    paddingBytes: scan.tail === 'clean' ? scan.fileLen - scan.validEnd : 0,
    tail: scan.tail,
    problem: scan.bad === null ? null : { code: badCode(scan), position: scan.bad.position, message: badMessage(scan) },
  };
}

function printText(dir: string, pattern: string, scanned: ScannedSegment[]): void {
  if (scanned.length === 0) {
    printLine(`${dir}: no segments matching ${pattern}`);
    return;
  }
  const headers = ['core', 'file', 'size', 'entries', 'epochs', 'sequences', 'valid end', 'torn bytes', 'tail'];
  const align = ['right', 'left', 'right', 'right', 'right', 'right', 'right', 'right', 'left'] as const;
  const rows = scanned.map(({ ref, scan }) => [
    String(ref.coreId), basename(ref.path), formatBytes(scan.fileLen), String(scan.entries),
    formatRange(scan.first?.epoch ?? null, scan.last?.epoch ?? null),
    formatRange(scan.first?.sequence ?? null, scan.last?.sequence ?? null),
    String(scan.validEnd), String(tornBytes(scan)), scan.tail,
  ]);
  printLine(`${dir} (${scanned.length} segment${scanned.length === 1 ? '' : 's'}, pattern ${pattern})`);
  printLine();
  printLine(table(headers, rows, [...align]));
  const bad = scanned.filter((s) => s.scan.bad !== null);
  if (bad.length > 0) printLine();
  for (const s of bad) printLine(`core ${s.ref.coreId}: ${badMessage(s.scan)}`);
}
