// `npm run torture -- --minutes N`: the crash, fault, fuzz and kill suites for N minutes,
// with fresh seeds; prints iterations, crashes survived and every failure with its seed.
// `--suite NAME --seed S` replays one seed of one suite exactly (kills: see kill-suite.ts).
import { Command } from 'commander';
import { randomInt } from 'node:crypto';
import { checkpointCrashSuite, checkpointFaultSuite } from './checkpoint-crash.js';
import { checkpointFuzzSuite } from './checkpoint-fuzz.js';
import { fuzzSuite } from './fuzz.js';
import { groupCommitFaultSuite, groupCommitSuite } from './group-commit-crash.js';
import type { TortureSuite } from './harness.js';
import { killSuite } from './kill-suite.js';
import { managerCrashSuite, managerFaultSuite } from './manager-crash.js';
import { recoveryCrashSuite } from './recovery-crash.js';
import { recoveryFuzzSuite } from './recovery-fuzz.js';
import { sioCrashSuite, sioFaultSuite } from './sio-crash.js';
import { writerCrashSuite, writerFaultSuite } from './writer-crash.js';

interface Tally { seeds: number; iterations: number; crashes: number; ms: number; failures: string[] }

const program = new Command()
  .name('torture')
  .option('--minutes <n>', 'how long to run', '1')
  .option('--suite <names>', 'comma-separated suites (default: all)')
  .option('--seed <n>', 'replay this one seed (with --suite) and exit')
  .option('--no-kill', 'leave out the SIGKILL suite')
  .parse();
const opts = program.opts<{ minutes: string; suite?: string; seed?: string; kill: boolean }>();

const kill = killSuite();
const weights = new Map<TortureSuite, number>([[writerCrashSuite, 2], [writerFaultSuite, 2], [managerCrashSuite, 2], [managerFaultSuite, 2], [sioCrashSuite, 2], [sioFaultSuite, 2], [groupCommitSuite, 1], [groupCommitFaultSuite, 1], [recoveryCrashSuite, 3], [checkpointCrashSuite, 2], [checkpointFaultSuite, 2], [checkpointFuzzSuite, 1], [recoveryFuzzSuite, 1], [fuzzSuite, 3], [kill, 2]]);
let suites = [...weights.keys()];
if (opts.suite !== undefined) {
  const names = opts.suite.split(',');
  suites = suites.filter((s) => names.includes(s.name));
  if (suites.length === 0) {
    console.error(`no suite named ${opts.suite}; suites: ${[...weights.keys()].map((s) => s.name).join(', ')}`);
    process.exit(2);
  }
} else if (!opts.kill) suites = suites.filter((s) => s !== kill);

async function main(): Promise<number> {
  if (opts.seed !== undefined) {
    const seed = Number(opts.seed);
    for (const s of suites) {
      const r = await s.run(seed);
      console.log(`${s.name} seed ${seed}: ok (${r.iterations} iterations, ${r.crashes} crashes)`);
    }
    return 0;
  }
  const deadline = Date.now() + Number(opts.minutes) * 60_000;
  const tally = new Map<TortureSuite, Tally>(suites.map((s) => [s, { seeds: 0, iterations: 0, crashes: 0, ms: 0, failures: [] }]));
  let lastReport = Date.now();
  const report = (final: boolean): void => {
    const lines = [...tally].map(([s, t]) => `  ${s.name.padEnd(19)} seeds ${String(t.seeds).padStart(7)}  iterations ${String(t.iterations).padStart(10)}  crashes ${String(t.crashes).padStart(8)}  failures ${t.failures.length}`);
    const total = [...tally.values()].reduce((a, t) => ({ it: a.it + t.iterations, cr: a.cr + t.crashes, f: a.f + t.failures.length }), { it: 0, cr: 0, f: 0 });
    console.log(`${final ? 'TORTURE DONE' : 'torture'} ${new Date().toISOString()}: ${total.it} iterations, ${total.cr} crashes survived, ${total.f} failures\n${lines.join('\n')}`);
  };
  while (Date.now() < deadline) {
    // The suite furthest behind its share of the time goes next.
    let next = suites[0]!;
    for (const s of suites) if (tally.get(s)!.ms / weights.get(s)! < tally.get(next)!.ms / weights.get(next)!) next = s;
    const t = tally.get(next)!;
    const seed = randomInt(1, 2 ** 47);
    const start = Date.now();
    try {
      const r = await next.run(seed);
      t.iterations += r.iterations;
      t.crashes += r.crashes;
    } catch (e) {
      const msg = String((e as Error)?.stack ?? e);
      t.failures.push(`seed ${seed}: ${msg}`);
      console.log(`FAILURE in ${next.name} seed ${seed}:\n${msg}\n`);
    }
    t.seeds++;
    t.ms += Date.now() - start;
    if (Date.now() - lastReport > 30_000) {
      report(false);
      lastReport = Date.now();
    }
  }
  report(true);
  const failures = [...tally].flatMap(([s, t]) => t.failures.map((f) => `${s.name} ${f.split('\n')[0]}`));
  if (failures.length > 0) console.log(`failing seeds:\n  ${failures.join('\n  ')}`);
  return failures.length > 0 ? 1 : 0;
}

// Interrupted: remove the kill suite's files; 'exit' handlers SIGKILL a running child.
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => { kill.cleanup(); process.exit(130); });

main().then((code) => { kill.cleanup(); process.exit(code); }, (e) => { kill.cleanup(); console.error(e); process.exit(1); });
