#!/usr/bin/env node
/**
 * A child-process ingest driver: starts a {@link CoreWalPool} on a directory, runs many
 * concurrent producers, takes a checkpoint every `--checkpoint-ms`, and reports every
 * acknowledged (durable) put to its parent, so that the parent can SIGKILL it at any
 * moment, recover the directory and check that every reported record survived. Used by
 * `corewal demo` and by the crash-torture tests.
 *
 * Options (argv, or the environment as COREWAL_INGEST_<NAME> in upper snake case):
 *   --dir <path>             WAL directory (required)
 *   --checkpoint-dir <path>  checkpoint directory; without it, no checkpoints
 *   --checkpoint-ms <n>      milliseconds between checkpoints (default 1000)
 *   --workers <n>            worker threads / cores (default os.availableParallelism())
 *   --producers <n>          appends in flight (default 64)
 *   --value-bytes <n>        bytes per value (default 100)
 *   --duration-ms <n>        stop cleanly after this long; 0 runs until killed (default 0)
 *   --report-ms <n>          milliseconds between acknowledgement reports (default 20)
 *   --prefix <s>             key prefix, so runs on the same directory use distinct keys (default 'k')
 *   --kill-at <step>         crash tests: SIGKILL this process itself when checkpoint number
 *                            --kill-at-checkpoint (default 1, counted from this run's first) reaches
 *                            <step> ('barriers', 'durable' or 'compacted'; see CoreWalPool.setCheckpointHook),
 *                            after a 'killing' report and every acknowledgement before it are sent
 *
 * Reports (IPC `process.send` when forked with IPC, else one JSON object per stdout line):
 *   { type: 'ready', pid, workers, epoch }
 *   { type: 'acked', keys: string[], latencyUs: number[] }
 *                                                keys whose put is durable, in no particular order, and
 *                                                each one's commit latency (put called → durable), µs
 *   { type: 'checkpoint', id, epoch, entriesMerged }
 *   { type: 'done', acked, checkpoints }         after a clean stop (duration reached, or SIGTERM)
 *   { type: 'killing', step, checkpoint, ackedDuring }
 *                                                --kill-at: about to SIGKILL itself; ackedDuring counts
 *                                                the puts acknowledged since that checkpoint began
 *   { type: 'error', code, message }             then exit code 1
 * Every key's value is {@link ingestValue}(key, valueBytes), so a verifier needs only the keys.
 */
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { CheckpointStore } from '../checkpoint/store.js';
import { PerCoreWalError } from '../errors/errors.js';
import { CoreWalPool, type CheckpointStep } from './pool.js';

export interface IngestOptions {
  dir: string;
  checkpointDir?: string;
  checkpointMs?: number;
  workers?: number;
  producers?: number;
  valueBytes?: number;
  durationMs?: number;
  reportMs?: number;
  prefix?: string;
  killAt?: CheckpointStep;
  killAtCheckpoint?: number;
}

const KILL_STEPS: readonly CheckpointStep[] = ['barriers', 'durable', 'compacted'];

export type IngestReport =
  | { type: 'ready'; pid: number; workers: number; epoch: string }
  | { type: 'acked'; keys: string[]; latencyUs: number[] }
  | { type: 'checkpoint'; id: string; epoch: string; entriesMerged: number }
  | { type: 'done'; acked: number; checkpoints: number }
  | { type: 'killing'; step: CheckpointStep; checkpoint: number; ackedDuring: number }
  | { type: 'error'; code: string; message: string };

/** The value the ingest driver writes for `key`: the key's bytes, then 'x' up to `valueBytes`. */
export function ingestValue(key: string, valueBytes: number): Buffer {
  const v = Buffer.alloc(valueBytes, 0x78);
  v.write(key, 0, 'utf8');
  return v;
}

/**
 * Runs the ingest until `durationMs` passes (or forever), reporting through `report`.
 * Resolves after a clean close; `stop()` on the returned handle ends it early. `report`
 * calls `sent`, when given, once the report (and so every one before it) has gone out.
 */
export function runIngest(options: IngestOptions, report: (r: IngestReport, sent?: () => void) => void): { done: Promise<void>; stop: () => void } {
  let stopped = false;
  const stop = () => { stopped = true; };
  const done = (async () => {
    const store = options.checkpointDir ? CheckpointStore.open({ checkpointDir: options.checkpointDir }) : undefined;
    const workers = options.workers ?? availableParallelism();
    const pool = await CoreWalPool.start({ dir: options.dir, workers, checkpointStore: store });
    report({ type: 'ready', pid: process.pid, workers, epoch: pool.epoch().toString() });
    const valueBytes = options.valueBytes ?? 100;
    const prefix = options.prefix ?? 'k';
    let pending: string[] = [];
    let latencies: number[] = [];
    let acked = 0;
    const flush = () => {
      if (pending.length === 0) return;
      report({ type: 'acked', keys: pending, latencyUs: latencies });
      pending = [];
      latencies = [];
    };
    const reporter = setInterval(flush, options.reportMs ?? 20);
    let next = 0;
    let checkpoints = 0;
    let cpId = (store?.latestCheckpoint()?.id ?? 0n) + 1n;
    let ackedAtCheckpointStart = 0;
    if (options.killAt !== undefined) {
      const step = options.killAt;
      const at = options.killAtCheckpoint ?? 1;
      pool.setCheckpointHook(async (s) => {
        if (s !== step || checkpoints + 1 !== at) return;
        flush();
        await new Promise<void>((r) => report({ type: 'killing', step: s, checkpoint: at, ackedDuring: acked - ackedAtCheckpointStart }, r));
        // Mid-checkpoint, with the workers still appending: no drain, no close.
        process.kill(process.pid, 'SIGKILL');
        await new Promise(() => {});
      });
    }
    const lane = async () => {
      while (!stopped) {
        const key = `${prefix}${next++}`;
        const t0 = performance.now();
        await pool.put(key, ingestValue(key, valueBytes));
        // Measured here, in the producer's own process, so the figure is the commit
        // latency an application sees, not the report's trip to the parent.
        latencies.push(Math.round((performance.now() - t0) * 1000));
        pending.push(key);
        acked++;
      }
    };
    const checkpointer = async () => {
      const every = options.checkpointMs ?? 1000;
      while (!stopped && store) {
        await new Promise((r) => setTimeout(r, every));
        if (stopped) break;
        ackedAtCheckpointStart = acked;
        const m = await pool.createCheckpoint(cpId++);
        checkpoints++;
        report({ type: 'checkpoint', id: m.checkpoint.id.toString(), epoch: m.checkpoint.epoch.toString(), entriesMerged: m.entriesMerged });
      }
    };
    const timer = options.durationMs ? setTimeout(stop, options.durationMs) : null;
    try {
      await Promise.all([...Array.from({ length: options.producers ?? 64 }, lane), checkpointer()]);
    } finally {
      if (timer) clearTimeout(timer);
      clearInterval(reporter);
      flush();
      await pool.close();
    }
    report({ type: 'done', acked, checkpoints });
  })();
  return { done, stop };
}

function parseOptions(argv: string[]): IngestOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      dir: { type: 'string' }, 'checkpoint-dir': { type: 'string' }, 'checkpoint-ms': { type: 'string' },
      workers: { type: 'string' }, producers: { type: 'string' }, 'value-bytes': { type: 'string' },
      'duration-ms': { type: 'string' }, 'report-ms': { type: 'string' }, prefix: { type: 'string' },
      'kill-at': { type: 'string' }, 'kill-at-checkpoint': { type: 'string' },
    },
  });
  const get = (name: keyof typeof values): string | undefined =>
    (values[name] as string | undefined) ?? process.env[`COREWAL_INGEST_${name.toUpperCase().replace(/-/g, '_')}`];
  const num = (name: keyof typeof values): number | undefined => {
    const v = get(name);
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n < 0) throw new PerCoreWalError('INVALID_ARGUMENT', `--${name} must be a non-negative integer, got ${v}`);
    return n;
  };
  const killAt = get('kill-at') as CheckpointStep | undefined;
  if (killAt !== undefined && !KILL_STEPS.includes(killAt)) {
    throw new PerCoreWalError('INVALID_ARGUMENT', `--kill-at must be one of ${KILL_STEPS.join(', ')}, got ${killAt}`);
  }
  const dir = get('dir');
  if (!dir) throw new PerCoreWalError('INVALID_ARGUMENT', '--dir (or COREWAL_INGEST_DIR) is required');
  return {
    dir, checkpointDir: get('checkpoint-dir'), checkpointMs: num('checkpoint-ms'), workers: num('workers'), producers: num('producers'),
    valueBytes: num('value-bytes'), durationMs: num('duration-ms'), reportMs: num('report-ms'), prefix: get('prefix'),
    killAt, killAtCheckpoint: num('kill-at-checkpoint'),
  };
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const send = (r: IngestReport, sent?: () => void): void => {
    if (process.send) process.send(r, () => sent?.());
    else process.stdout.write(JSON.stringify(r) + '\n', sent === undefined ? undefined : () => sent());
  };
  try {
    const run = runIngest(parseOptions(process.argv.slice(2)), send);
    process.once('SIGTERM', run.stop);
    process.once('SIGINT', run.stop);
    await run.done;
    // Let the last IPC messages go out before the channel closes.
    if (process.send) process.disconnect?.();
  } catch (e) {
    const err = e as { code?: string; message?: string };
    send({ type: 'error', code: err.code ?? 'ERROR', message: err.message ?? String(e) });
    process.exitCode = 1;
    if (process.send) process.disconnect?.();
  }
}
