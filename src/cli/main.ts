#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { PerCoreWalError } from '../errors/errors.js';
import { registerBench } from './commands/bench.js';
import { registerDemo } from './commands/demo.js';
import { registerDump } from './commands/dump.js';
import { registerInspect } from './commands/inspect.js';
import { registerRecover } from './commands/recover.js';
import { registerRepair } from './commands/repair.js';
import { registerVerify } from './commands/verify.js';
import { CliError, EXIT_FAILED, EXIT_OK, EXIT_USAGE, setExitCode } from './errors.js';

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

export function buildProgram(): Command {
  const program = new Command('corewal')
    .description('Run the corewal demo (ingest, SIGKILL, recover, check); inspect, dump, verify, repair and recover write-ahead logs; run the benchmarks.')
    .version(version(), '-V, --version')
    // Settings made before .command() are inherited by every subcommand.
    .exitOverride()
    .showHelpAfterError('(run with --help for usage)')
    .configureHelp({ sortSubcommands: false, showGlobalOptions: false });
  program.addHelpText('after', `
Exit status: 0 ok, 1 corruption or a failed verification (or an I/O error), 2 usage error.
Run "corewal <command> --help" for a command's options.`);
  // The demo first: it is what a newcomer runs first (`npx corewal demo`).
  registerDemo(program);
  registerInspect(program);
  registerDump(program);
  registerVerify(program);
  registerRepair(program);
  registerRecover(program);
  registerBench(program);
  return program;
}

/** Maps every way a command can end to the documented exit codes. */
function exitCodeOf(e: unknown): number {
  if (e instanceof CommanderError) {
    // commander has already printed its message (or the help / version text).
    // `corewal help x` ends in 'commander.help' with exitCode 0; bare `corewal` in the same code with 1.
    if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version') return EXIT_OK;
    return e.code === 'commander.help' && e.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
  }
  if (e instanceof CliError) {
    process.stderr.write(`corewal: ${e.message}\n`);
    return e.exitCode;
  }
  if (e instanceof PerCoreWalError) {
    process.stderr.write(`corewal: ${e.code}: ${e.message}\n`);
    return e.code === 'INVALID_ARGUMENT' ? EXIT_USAGE : EXIT_FAILED;
  }
  process.stderr.write(`corewal: unexpected error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  return EXIT_FAILED;
}

// `corewal dump … | head` closes the pipe early: that is the reader's choice, not a failure.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(process.exitCode ?? EXIT_OK);
  throw e;
});

try {
  await buildProgram().parseAsync(process.argv);
} catch (e) {
  setExitCode(exitCodeOf(e));
}
