import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { IngestReport } from '../../worker/ingest-child.js';

/**
 * Runs the worker pool's ingest child process (`src/worker/ingest-child.ts`: one worker
 * thread per core, many concurrent producers awaiting durability, a checkpoint every
 * `checkpointMs`) and SIGKILLs it mid-stream, keeping what it acknowledged on the way.
 * Ingest runs in a child so that the kill is a real one: no drain, no sync, no close, a
 * checkpoint perhaps half written.
 */

const CHILD = fileURLToPath(new URL('../../worker/ingest-child.js', import.meta.url));

export interface IngestPlan {
  walDir: string;
  checkpointDir: string;
  cores: number;
  producers: number;
  valueBytes: number;
  checkpointMs: number;
  /** Ingest time before the kill, from the moment every worker is ready. */
  seconds: number;
  /** Key prefix of this run: keys are `${prefix}${n}`, n = 0, 1, 2, … */
  prefix: string;
  /**
   * The kill waits for the first checkpoint (so that recovery starts from one), at most
   * this many ms past `seconds`.
   */
  maxWaitForCheckpointMs?: number;
  /** Aborting kills the child at once and rejects with an {@link IngestFailed} of code `ABORTED`. */
  signal?: AbortSignal;
}

export interface IngestTick {
  /** Seconds since the pool was ready (0 while starting). */
  elapsed: number;
  ready: boolean;
  acknowledged: number;
  checkpoints: number;
}

export interface IngestOutcome {
  /** The `n` of every acknowledged key `${prefix}${n}`, in the order the acknowledgements arrived. */
  acked: Float64Array;
  /** Commit latency of each acknowledged put, µs (put called → durable), same order. */
  latencyUs: Uint32Array;
  /** Completed checkpoints the child reported, in order. */
  checkpoints: { id: string; epoch: string; entriesMerged: number }[];
  /** From spawn to every worker ready. */
  startupMs: number;
  /** From ready to the SIGKILL. */
  ingestMs: number;
  pid: number;
}

/** A growable typed array: a run can acknowledge millions of records. */
class Column<T extends Float64Array | Uint32Array> {
  length = 0;
  constructor(private data: T, private readonly make: (n: number) => T) {}
  push(v: number): void {
    if (this.length === this.data.length) {
      const next = this.make(this.data.length * 2);
      next.set(this.data);
      this.data = next;
    }
    this.data[this.length++] = v;
  }
  view(): T { return this.data.subarray(0, this.length) as T; }
}

/** The child failed on its own (before the kill): its error, or its exit and stderr. */
export class IngestFailed extends Error {
  constructor(message: string, readonly code: string) {
    super(message);
    this.name = 'IngestFailed';
  }
}

export function ingestThenKill(plan: IngestPlan, onTick: (t: IngestTick) => void = () => {}): Promise<IngestOutcome> {
  const args = [
    '--dir', plan.walDir, '--checkpoint-dir', plan.checkpointDir, '--checkpoint-ms', String(plan.checkpointMs),
    '--workers', String(plan.cores), '--producers', String(plan.producers), '--value-bytes', String(plan.valueBytes),
    '--prefix', plan.prefix,
  ];
  const spawned = performance.now();
  const child = fork(CHILD, args, { stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
  let stderr = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (s: string) => { stderr = (stderr + s).slice(-4000); });
  const acked = new Column(new Float64Array(1 << 16), (n) => new Float64Array(n));
  const latency = new Column(new Uint32Array(1 << 16), (n) => new Uint32Array(n));
  const checkpoints: IngestOutcome['checkpoints'] = [];
  let readyAt: number | null = null;
  let killedAt: number | null = null;
  const maxWait = plan.maxWaitForCheckpointMs ?? 10_000;

  return new Promise<IngestOutcome>((resolve, reject) => {
    let failure: IngestFailed | null = null;
    const fail = (f: IngestFailed): void => {
      failure ??= f;
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    };
    const tick = (): void => {
      const now = performance.now();
      const elapsed = readyAt === null ? 0 : (Math.min(now, killedAt ?? now) - readyAt) / 1000;
      onTick({ elapsed, ready: readyAt !== null, acknowledged: acked.length, checkpoints: checkpoints.length });
      if (readyAt === null || killedAt !== null) return;
      const late = elapsed * 1000 >= plan.seconds * 1000 + maxWait;
      if (elapsed >= plan.seconds && (checkpoints.length > 0 || late)) {
        // SIGKILL mid-stream: producers have appends in flight, a checkpoint may be running.
        killedAt = now;
        child.kill('SIGKILL');
      }
    };
    const timer = setInterval(tick, 50);
    const abort = (): void => fail(new IngestFailed('the demo was interrupted', 'ABORTED'));
    if (plan.signal?.aborted) abort();
    else plan.signal?.addEventListener('abort', abort, { once: true });
    child.on('message', (m: IngestReport) => {
      switch (m.type) {
        case 'ready':
          readyAt = performance.now();
          break;
        case 'acked': {
          const n = m.keys.length;
          for (let i = 0; i < n; i++) {
            const k = m.keys[i]!;
            const id = k.startsWith(plan.prefix) ? Number(k.slice(plan.prefix.length)) : NaN;
            if (!Number.isSafeInteger(id)) {
              fail(new IngestFailed(`the ingest child acknowledged "${k}", not a key of the form ${plan.prefix}<n>`, 'PROTOCOL'));
              return;
            }
            acked.push(id);
            latency.push(m.latencyUs?.[i] ?? 0);
          }
          break;
        }
        case 'checkpoint':
          checkpoints.push({ id: m.id, epoch: m.epoch, entriesMerged: m.entriesMerged });
          break;
        case 'error':
          fail(new IngestFailed(`the ingest child failed: ${m.code}: ${m.message}`, m.code));
          break;
        case 'done':
          break;
      }
    });
    child.once('error', (e) => fail(new IngestFailed(`could not run the ingest child ${CHILD}: ${e.message}`, 'SPAWN')));
    // Acknowledgements the child sent before it died may still be in the pipe: wait for
    // the IPC channel to close as well as for the exit, so that none is left unread.
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    const disconnected = new Promise<void>((r) => (child.connected ? child.once('disconnect', () => r()) : r()));
    void Promise.all([exited, disconnected]).then(() => {
      clearInterval(timer);
      plan.signal?.removeEventListener('abort', abort);
      tick();
      if (failure === null && killedAt === null) {
        failure = new IngestFailed(
          `the ingest child exited before the kill (${child.signalCode ?? `exit code ${child.exitCode}`})${stderr ? `:\n${stderr.trim()}` : ''}`, 'EXITED');
      }
      if (failure !== null) return reject(failure);
      resolve({
        acked: acked.view(), latencyUs: latency.view(), checkpoints,
        startupMs: (readyAt ?? killedAt!) - spawned, ingestMs: killedAt! - (readyAt ?? killedAt!), pid: child.pid ?? -1,
      });
    });
  });
}

/** p in [0, 1] of `values` (sorted here, on a copy). */
export function percentiles(values: Uint32Array, ps: readonly number[]): number[] {
  if (values.length === 0) return ps.map(() => 0);
  const sorted = values.slice().sort();
  return ps.map((p) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!);
}
