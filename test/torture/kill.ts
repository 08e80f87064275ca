import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { scanSegment, type PerCoreWalEntry } from '../../src/index.js';
import { Rng } from '../../src/testing/index.js';
import { sameBytes, TortureFailure } from './harness.js';
import { killValue } from './kill-values.js';

const CHILD = fileURLToPath(new URL('./kill-child.js', import.meta.url));

export interface KillRoundResult {
  acked: bigint;
  entries: number;
  tail: string;
}

/**
 * One real crash: spawn the child on `segment`, let it ingest for `ms`, SIGKILL it, then
 * recover the segment and check every acknowledged record is present with its value,
 * every record is one the child wrote, and the tail is at worst torn.
 */
export async function killRound(segment: string, seed: number, ms: number, preallocate: number, suite = 'kill'): Promise<KillRoundResult> {
  const fail = (m: string): never => { throw new TortureFailure(suite, seed, `${m} (segment ${segment}, prealloc ${preallocate}, ${ms} ms)`); };
  const child = spawn(process.execPath, [CHILD, segment, String(seed), String(preallocate)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let acked = -1n;
  let ackedPos = 0;
  let ready = false;
  let stderr = '';
  let pending = '';
  let timer: NodeJS.Timeout | undefined;
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  child.stdout.on('data', (d: Buffer) => {
    pending += d.toString();
    let nl: number;
    while ((nl = pending.indexOf('\n')) >= 0) {
      const [kind, a, b] = pending.slice(0, nl).split(' ');
      pending = pending.slice(nl + 1);
      if (kind === 'ready' && !ready) {
        ready = true;
        timer = setTimeout(() => child.kill('SIGKILL'), ms);
      } else if (kind === 'ack') {
        acked = BigInt(a!);
        ackedPos = Number(b);
      } else if (kind === 'damaged') {
        fail(`child found a damaged tail at ${a} on startup`);
      }
    }
  });
  const status = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('exit', (code, signal) => resolve({ code, signal }));
  });
  if (timer !== undefined) clearTimeout(timer);
  if (status.signal !== 'SIGKILL') fail(`child exited with ${status.code}/${status.signal} before the kill: ${stderr.slice(0, 2000)}`);

  const entries: PerCoreWalEntry[] = [];
  const scan = scanSegment(0, segment, { onEntry: (e) => entries.push(e) });
  if (scan.tail === 'damaged') fail(`damaged tail at ${scan.bad?.position} after SIGKILL`);
  if (scan.validEnd < ackedPos) fail(`valid end ${scan.validEnd} is before the acknowledged synced position ${ackedPos}`);
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]!;
    if (e.sequence !== BigInt(i)) fail(`record ${i} has sequence ${e.sequence}`);
    const key = Buffer.from(`k${e.sequence}`);
    if (!sameBytes(e.key(), key)) fail(`record ${i} has key ${Buffer.from(e.key() ?? []).toString()}`);
    if (e.isPut() && !sameBytes(e.value(), killValue(e.sequence))) fail(`record ${i} has a wrong value`);
  }
  const last = entries.length > 0 ? entries[entries.length - 1]!.sequence : -1n;
  if (last < acked) fail(`acknowledged sequence ${acked} lost: the log ends at ${last}`);
  return { acked, entries: entries.length, tail: scan.tail };
}

/**
 * `rounds` kills in a row on one segment (each child resumes where recovery left it),
 * ingest times drawn from [minMs, maxMs].
 */
export async function killLane(segment: string, seed: number, rounds: number, minMs = 100, maxMs = 300): Promise<number> {
  const rng = new Rng(seed);
  const preallocate = rng.pick([0, 65536, 4 << 20]);
  for (let i = 0; i < rounds; i++) await killRound(segment, rng.u32(), rng.range(minMs, maxMs), preallocate);
  return rounds;
}
