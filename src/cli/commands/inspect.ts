import { basename } from 'node:path';
import type { Command } from 'commander';
import { EXIT_FAILED, EXIT_OK, setExitCode } from '../errors.js';
import { formatBytes, formatRange, table } from '../format.js';
import { withJson, withPattern, withProgress, type CommonFlags } from '../options.js';
import { printJson, printLine } from '../output.js';
import { byteProgress, progressWanted } from '../progress.js';
import { checkpointText, listCheckpoints } from '../checkpoints.js';
import { badCode, badMessage, scanAll, tornBytes, type ScannedSegment } from '../scan-all.js';
import { findSegments } from '../segments.js';

interface InspectFlags extends CommonFlags {
  checkpointDir?: string;
}

export function registerInspect(program: Command): void {
  const cmd = program
    .command('inspect')
    .description('show every segment of a WAL directory: entries, epoch and sequence ranges, valid end, torn bytes, tail state')
    .argument('<dir>', 'WAL directory');
  withPattern(cmd);
  cmd.option('--checkpoint-dir <dir>', 'also list the checkpoints there: id, epoch, full or incremental on which parent, keys, size, valid or why not');
  withJson(cmd, 'print the segments (and checkpoints) as one JSON document');
  withProgress(cmd);
  cmd.addHelpText('after', `
Exit status: 0 when every segment is clean or ends in a repairable torn tail / crash
debris, 1 when a segment has damage to synced data or a checkpoint does not validate,
2 on a usage error.`);
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
  // Read after the segments: a checkpoint directory is small next to a WAL, and fully
  // validating it (every chain, as recovery would) needs no bar of its own.
  const checkpoints = flags.checkpointDir === undefined ? null : listCheckpoints(flags.checkpointDir, { mustExist: true });
  const badCheckpoint = checkpoints?.checkpoints.some((c) => !c.valid) ?? false;
  if (flags.json) {
    printJson({
      dir, pattern: flags.pattern, segments: rows,
      ...(checkpoints === null ? {} : { checkpointDir: checkpoints.dir, checkpointDirExists: checkpoints.exists, checkpoints: checkpoints.checkpoints, checkpointTempFiles: checkpoints.tempFiles }),
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
    if (checkpoints !== null) {
      printLine();
      for (const l of checkpointText(checkpoints)) printLine(l);
    }
  }
  return damaged || badCheckpoint ? EXIT_FAILED : EXIT_OK;
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
