import { fork, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { PerCoreWalConfig, PerCoreWalManager, recoverPerCore, scanSegment, type PerCoreWalEntry } from '../../src/index.js';
import { Rng } from '../../src/testing/index.js';
import { ingestValue, type IngestReport } from '../../src/worker/ingest-child.js';
import { sameBytes, TortureFailure } from './harness.js';
import { killKey, killValue } from './kill-values.js';

const CHILD = fileURLToPath(new URL('./kill-child.js', import.meta.url));
const INGEST_CHILD = fileURLToPath(new URL('../../src/worker/ingest-child.js', import.meta.url));

/** What a kill target is: one segment written by a bare writer, or a manager's directory. */
export type KillTarget =
  | { mode: 'writer'; segment: string }
  | { mode: 'manager'; dir: string; cores: number }
  | { mode: 'checkpoint'; dir: string; cores: number }
  | { mode: 'group'; segment: string; backend: 'sync' | 'threadpool' | 'uring' }
  | { mode: 'pool'; dir: string; workers: number };

/**
 * Spawns the child on `target`, lets it ingest for `ms` after it is ready, SIGKILLs it,
 * and returns the last acknowledgement line's fields (empty if none came).
 */
async function runChild(
  target: Exclude<KillTarget, { mode: 'pool' }>, seed: number, ms: number, preallocate: number, fail: (m: string) => never,
  onAck: (fields: string[]) => void = () => {},
): Promise<string[]> {
  const args = target.mode === 'writer' ? ['writer', target.segment, String(seed), String(preallocate)]
    : target.mode === 'group' ? ['group', target.segment, String(seed), String(preallocate), target.backend]
      : [target.mode, target.dir, String(seed), String(preallocate), String(target.cores)];
  const child = spawn(process.execPath, [CHILD, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  // The child ingests until killed: never leave it running if this process goes first.
  const reap = (): void => { child.kill('SIGKILL'); };
  process.on('exit', reap);
  let ack: string[] = [];
  let stderr = '';
  let pending = '';
  let timer: NodeJS.Timeout | undefined;
  let problem: string | null = null;
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  child.stdout.on('data', (d: Buffer) => {
    pending += d.toString();
    let nl: number;
    while ((nl = pending.indexOf('\n')) >= 0) {
      const fields = pending.slice(0, nl).split(' ');
      pending = pending.slice(nl + 1);
      if (fields[0] === 'ready' && timer === undefined) timer = setTimeout(() => child.kill('SIGKILL'), ms);
      else if (fields[0] === 'ack') { ack = fields.slice(1); onAck(ack); }
      else problem ??= `child said: ${fields.join(' ')}`;
    }
  });
  const status = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('exit', (code, signal) => resolve({ code, signal }));
  });
  if (timer !== undefined) clearTimeout(timer);
  process.off('exit', reap);
  if (problem !== null) fail(problem);
  if (status.signal !== 'SIGKILL') fail(`child exited with ${status.code}/${status.signal} before the kill: ${stderr.slice(0, 2000)}`);
  return ack;
}

/** Every record of core `c` is the one the child wrote for its sequence, sequences from 0 without a gap. */
function checkCore(entries: readonly PerCoreWalEntry[], c: number, acked: bigint, fail: (m: string) => never): void {
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]!;
    if (e.sequence !== BigInt(i) || e.coreId !== c) fail(`core ${c} record ${i} has core ${e.coreId} sequence ${e.sequence}`);
    if (!sameBytes(e.key(), killKey(c, e.sequence))) fail(`core ${c} record ${i} has key ${Buffer.from(e.key() ?? []).toString()}`);
    if (e.isPut() && !sameBytes(e.value(), killValue(e.sequence))) fail(`core ${c} record ${i} has a wrong value`);
  }
  const last = entries.length > 0 ? entries[entries.length - 1]!.sequence : -1n;
  if (last < acked) fail(`core ${c}: acknowledged sequence ${acked} lost, the log ends at ${last}`);
}

/**
 * One real crash: the child ingests with syncs, acknowledging after each, and is killed
 * with SIGKILL; then the log is recovered (scan for a bare segment, `PerCoreWalManager.open`
 * for a manager's directory) and every acknowledged record must be there, intact.
 */
export async function killRound(target: KillTarget, seed: number, ms: number, preallocate: number, suite = 'kill'): Promise<number> {
  const what = target.mode === 'writer' || target.mode === 'group' ? target.segment : target.dir;
  const fail = (m: string): never => { throw new TortureFailure(suite, seed, `${m} (${target.mode} ${what}, prealloc ${preallocate}, ${ms} ms)`); };
  if (target.mode === 'pool') return poolRound(target, seed, ms, fail);
  if (target.mode === 'checkpoint') return checkpointRound(target, seed, ms, preallocate, fail);
  if (target.mode === 'group') return groupRound(target, seed, ms, preallocate, fail);
  const ack = await runChild(target, seed, ms, preallocate, fail);
  if (target.mode === 'writer') {
    const acked = ack.length > 0 ? BigInt(ack[1]!) : -1n;
    const entries: PerCoreWalEntry[] = [];
    const scan = scanSegment(0, target.segment, { onEntry: (e) => entries.push(e) });
    if (scan.tail === 'damaged') fail(`damaged tail at ${scan.bad?.position} after SIGKILL`);
    if (ack.length > 0 && scan.validEnd < Number(ack[0])) fail(`valid end ${scan.validEnd} is before the acknowledged synced position ${ack[0]}`);
    checkCore(entries, 0, acked, fail);
    return entries.length;
  }
  let m: PerCoreWalManager;
  try {
    m = PerCoreWalManager.open(new PerCoreWalConfig(target.dir, target.cores));
  } catch (e) {
    if (ack.length === 0 && (e as { code?: string }).code === 'SEGMENT_NOT_FOUND') return 0; // killed during create
    return fail(`PerCoreWalManager.open after SIGKILL failed: ${String(e)}`);
  }
  try {
    if (ack.length > 0 && m.epoch() < BigInt(ack[0]!)) fail(`resumed at epoch ${m.epoch()}, an acknowledged sync was at ${ack[0]}`);
    const all = m.mergeSegments();
    for (let c = 0; c < target.cores; c++) {
      checkCore(all.filter((e) => e.coreId === c), c, ack.length > 0 ? BigInt(ack[1 + c]!) : -1n, fail);
    }
    return all.length;
  } finally {
    m.close();
  }
}

/**
 * Checkpoint mode: the recovered state (newest checkpoint plus the WAL after it) must hold
 * every acknowledged put with its value, and every key in it must carry its own value.
 */
async function checkpointRound(target: Extract<KillTarget, { mode: 'checkpoint' }>, seed: number, ms: number, preallocate: number, fail: (m: string) => never): Promise<number> {
  const acked: string[] = [];
  await runChild(target, seed, ms, preallocate, fail, (fields) => {
    for (const f of fields) {
      const [c, list] = f.split(':');
      if (list) for (const s of list.split(',')) acked.push(`${c}:${s}`);
    }
  });
  let rec;
  try {
    rec = recoverPerCore(`${target.dir}/wal`, `${target.dir}/checkpoints`, target.cores);
  } catch (e) {
    if (acked.length === 0 && (e as { code?: string }).code === 'SEGMENT_NOT_FOUND') return 0;
    return fail(`recovery after SIGKILL failed: ${String(e)}`);
  }
  for (const a of acked) {
    const [c, s] = a.split(':');
    const v = rec.state.get(killKey(Number(c), BigInt(s!)));
    if (v === undefined || !sameBytes(v, killValue(BigInt(s!)))) fail(`acknowledged put ${a} ${v === undefined ? 'lost' : 'has a wrong value'} after recovery`);
  }
  for (const [k, v] of rec.state.entries()) {
    const m = /^c(\d+)-k(\d+)$/.exec(Buffer.from(k).toString());
    if (m === null || !sameBytes(v, killValue(BigInt(m[2]!)))) fail(`recovered key ${Buffer.from(k).toString()} was never written so`);
  }
  return rec.state.size;
}

/** Group mode: every put whose promise resolved before the kill is in the segment with its value. */
async function groupRound(target: Extract<KillTarget, { mode: 'group' }>, seed: number, ms: number, preallocate: number, fail: (m: string) => never): Promise<number> {
  const acked: bigint[] = [];
  await runChild(target, seed, ms, preallocate, fail, (fields) => {
    for (const s of fields[0]!.split(',')) acked.push(BigInt(s));
  });
  const bySeq = new Map<bigint, PerCoreWalEntry>();
  const scan = scanSegment(0, target.segment, { onEntry: (e) => bySeq.set(e.sequence, e) });
  if (scan.tail === 'damaged') fail(`damaged tail at ${scan.bad?.position} after SIGKILL`);
  for (const seq of acked) {
    const e = bySeq.get(seq);
    if (e === undefined || !sameBytes(e.value(), killValue(seq))) fail(`acknowledged put ${seq} ${e === undefined ? 'lost' : 'has a wrong value'}`);
  }
  checkCore([...bySeq.values()], 0, -1n, fail);
  return acked.length;
}

/**
 * Pool mode: the worker-pool ingest child (`src/worker/ingest-child.js`: a `CoreWalPool`
 * with many producers and a checkpoint every 100 ms) is SIGKILLed `ms` after it is ready;
 * the recovered state must hold every put it reported durable, with its value.
 */
async function poolRound(target: Extract<KillTarget, { mode: 'pool' }>, seed: number, ms: number, fail: (m: string) => never): Promise<number> {
  const wal = `${target.dir}/wal`, ckpt = `${target.dir}/checkpoints`;
  const args = ['--dir', wal, '--checkpoint-dir', ckpt, '--checkpoint-ms', '100', '--workers', String(target.workers),
    '--value-bytes', '48', '--report-ms', '5', '--prefix', `r${seed}-`];
  const child = fork(INGEST_CHILD, args, { stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
  const reap = (): void => { child.kill('SIGKILL'); };
  process.on('exit', reap);
  const acked: string[] = [];
  let stderr = '';
  let problem: string | null = null;
  let timer: NodeJS.Timeout | undefined;
  child.stderr?.on('data', (d: Buffer) => { stderr += d.toString(); });
  child.on('message', (m: IngestReport) => {
    if (m.type === 'ready' && timer === undefined) timer = setTimeout(() => child.kill('SIGKILL'), ms);
    else if (m.type === 'acked') for (const k of m.keys) acked.push(k);
    else if (m.type === 'error') problem ??= `${m.code}: ${m.message}`;
  });
  const status = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('exit', (code, signal) => resolve({ code, signal }));
  });
  if (timer !== undefined) clearTimeout(timer);
  process.off('exit', reap);
  if (problem !== null) fail(`pool child reported ${problem}`);
  if (status.signal !== 'SIGKILL') fail(`pool child exited with ${status.code}/${status.signal} before the kill: ${stderr.slice(0, 2000)}`);
  let rec;
  try {
    rec = recoverPerCore(wal, ckpt, target.workers);
  } catch (e) {
    if (acked.length === 0 && (e as { code?: string }).code === 'SEGMENT_NOT_FOUND') return 0;
    return fail(`recovery after SIGKILL of the pool failed: ${String(e)}`);
  }
  for (const k of acked) {
    const v = rec.state.get(k);
    if (v === undefined || !ingestValue(k, 48).equals(Buffer.from(v))) fail(`acknowledged put ${k} ${v === undefined ? 'lost' : 'has a wrong value'} after recovery`);
  }
  return acked.length;
}

/** `rounds` kills in a row on one target, each child resuming what recovery left. */
export async function killLane(target: KillTarget, seed: number, rounds: number, minMs = 100, maxMs = 300): Promise<number> {
  const rng = new Rng(seed);
  const preallocate = rng.pick([0, 65536, 4 << 20]);
  for (let i = 0; i < rounds; i++) await killRound(target, rng.u32(), rng.range(minMs, maxMs), preallocate);
  return rounds;
}
