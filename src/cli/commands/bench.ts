import type { Command } from 'commander';
import { CliError, EXIT_OK, setExitCode } from '../errors.js';
import { parsePositive } from '../options.js';
import { byteProgress, progressWanted } from '../progress.js';

interface BenchFlags {
  filter?: string;
  seconds?: number;
  smoke?: boolean;
  json?: boolean;
  out?: string;
  save: boolean;
  progress?: boolean;
}

export function registerBench(program: Command): void {
  program
    .command('bench')
    .description('run the benchmark suite (the same as npm run bench): corewal against its raw baselines')
    .option('--filter <regex>', 'only cases whose "group name" matches (case-insensitive)')
    .option('--seconds <s>', 'seconds per measured run (default 2; 0.05 with --smoke)', parsePositive)
    .option('--smoke', 'one short run per case: checks that every case runs, measures nothing meaningful')
    .option('--json', 'print the results as JSON instead of a line per case')
    .option('--out <dir>', 'write <date>.json and <date>.md there (default: bench/results of the repository)')
    .option('--no-save', 'do not write result files')
    .option('--no-progress', 'never draw a progress bar (it is off anyway when stdout is not a terminal)')
    .action(async (flags: BenchFlags) => setExitCode(await runBenchCommand(flags)));
}

async function runBenchCommand(flags: BenchFlags): Promise<number> {
  if (flags.filter !== undefined) {
    try {
      new RegExp(flags.filter, 'i');
    } catch (e) {
      throw new CliError('USAGE', `--filter is not a valid regular expression: ${(e as Error).message}`, { cause: e });
    }
  }
  // The suite is compiled beside the library (dist/bench) but not shipped in the package,
  // so it is loaded only when asked for: every other command works without it.
  let bench: typeof import('../../../bench/run.js');
  try {
    bench = await import('../../../bench/run.js');
  } catch (e) {
    if ((e as { code?: string }).code !== 'ERR_MODULE_NOT_FOUND') throw e;
    throw new CliError('UNAVAILABLE', `the benchmark suite is not part of this installation (dist/bench is missing): run it from a clone of the repository`, { cause: e });
  }
  let bar = byteProgress('bench', 0, false);
  if (progressWanted(flags)) {
    // Same selection as runBench makes, only to know how many cases the bar counts.
    const re = flags.filter !== undefined ? new RegExp(flags.filter, 'i') : null;
    const total = (await bench.loadCases()).filter((c) => re === null || re.test(`${c.group} ${c.name}`)).length;
    bar = byteProgress('bench', total, total > 0, 'cases');
  }
  let done = 0;
  try {
    await bench.runBench({
      filter: flags.filter, seconds: flags.seconds, smoke: flags.smoke, json: flags.json,
      out: flags.save ? flags.out : null,
      // runBench logs one line per finished case (and the JSON document at the end).
      log: (line) => {
        bar.interrupt(() => process.stdout.write(line + '\n'));
        bar.update(++done);
      },
    });
  } finally {
    bar.stop();
  }
  return EXIT_OK;
}
