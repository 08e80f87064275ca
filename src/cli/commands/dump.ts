import { basename } from 'node:path';
import type { Command } from 'commander';
import type { PerCoreWalEntry, WalOperationType } from '../../entry/entry.js';
import { EXIT_FAILED, EXIT_OK, setExitCode } from '../errors.js';
import { entryJson, entryText } from '../format.js';
import {
  OPERATIONS, parseCoreList, parseNonNegativeInt, parseOpList, parseU64, withJson, withPattern, withProgress, type CommonFlags,
} from '../options.js';
import { LineWriter, warn } from '../output.js';
import { byteProgress, progressWanted } from '../progress.js';
import { badCode, badMessage, scanAll } from '../scan-all.js';
import { resolveTarget } from '../segments.js';

interface DumpFlags extends CommonFlags {
  core?: number[];
  fromEpoch?: bigint;
  toEpoch?: bigint;
  op?: WalOperationType[];
  maxValue: number;
}

export function registerDump(program: Command): void {
  const cmd = program
    .command('dump')
    .description('print the entries of a segment or of every segment of a directory, as text or NDJSON')
    .argument('<segment|dir>', 'a segment file, or a WAL directory')
    .option('--core <ids>', 'only these cores (comma-separated, repeatable)', parseCoreList)
    .option('--from-epoch <n>', 'only entries with epoch >= n', parseU64)
    .option('--to-epoch <n>', 'only entries with epoch <= n', parseU64)
    .option('--op <ops>', `only these operations (comma-separated: ${OPERATIONS.join(', ')})`, parseOpList)
    .option('--max-value <chars>', 'in text output, cut keys and values longer than this (0: never)', parseNonNegativeInt, 80);
  withPattern(cmd);
  withJson(cmd, 'print one JSON object per entry (NDJSON)');
  withProgress(cmd);
  cmd.addHelpText('after', `
Segments are dumped one after the other, by core; within a segment entries are in write
order. Keys and values are shown as UTF-8 where printable, as hex otherwise (text: "quoted"
or 0x…; JSON: keyEncoding / valueEncoding "utf8" or "hex"). u64 values are strings in JSON.

A bad record ends the dump of its segment: the message on stderr names the file and the
byte position, and the exit status is 1. Exit status 2 on a usage error.`);
  cmd.action((target: string, flags: DumpFlags) => setExitCode(runDump(target, flags)));
}

export function runDump(target: string, flags: DumpFlags): number {
  const { segments: all } = resolveTarget(target, flags.pattern);
  const cores = flags.core === undefined ? null : new Set(flags.core);
  const segments = all.filter((s) => cores === null || cores.has(s.coreId));
  const ops = flags.op === undefined ? null : new Set<WalOperationType>(flags.op);
  const from = flags.fromEpoch, to = flags.toEpoch;
  const keep = (e: PerCoreWalEntry): boolean =>
    (ops === null || ops.has(e.operation.type)) && (from === undefined || e.epoch >= from) && (to === undefined || e.epoch <= to);
  const total = segments.reduce((s, r) => s + r.size, 0);
  // With stdout on a terminal the bar shares it with the dump: it stays below the lines
  // written so far (see ByteProgress.interrupt).
  const bar = byteProgress('dump', total, progressWanted(flags) && segments.length > 0);
  const out = new LineWriter((write) => bar.interrupt(write));
  let failed = false;
  try {
    scanAll(segments, bar, {
      entry: (ref, e, position) => {
        if (!keep(e)) return;
        if (flags.json) out.json(entryJson(e, ref.path, position));
        else out.line(entryText(e, ref.path, position, flags.maxValue));
      },
      segment: ({ ref, scan }) => {
        out.flush();
        if (scan.bad === null) return;
        failed = true;
        const message = `dump of ${basename(ref.path)} stopped: ${badMessage(scan)}`;
        const line = flags.json
          ? JSON.stringify({ error: badCode(scan), file: basename(ref.path), path: ref.path, position: scan.bad.position, tail: scan.tail, message })
          : message;
        bar.interrupt(() => warn(line));
      },
    });
  } finally {
    out.flush();
    bar.stop();
  }
  return failed ? EXIT_FAILED : EXIT_OK;
}
