import type { StateView } from '../../checkpoint/state.js';
import { ingestValue } from '../../worker/ingest-child.js';

/**
 * The demo's verdict on a recovered state. Every value the ingest writes is a function of
 * its key ({@link ingestValue}), so the check needs no copy of the data: an acknowledged
 * key must be present with exactly its value, and any other key of the run that survived
 * (durable, but killed before its acknowledgement reached the parent) must hold its value
 * too: recovery may keep more than was acknowledged, never something corrupt.
 */

export interface DemoCheck {
  /** Distinct keys acknowledged as durable. */
  acknowledged: number;
  /** Keys of this run in the recovered state. */
  recovered: number;
  /** Acknowledged keys missing from the recovered state. */
  lost: number;
  /** Acknowledged keys present with another value. */
  wrong: number;
  /** Unacknowledged keys of this run present with a value that is not theirs, or keys of this run that are not `${prefix}<n>`. */
  corrupt: number;
  /** Keys of this run that survived without an acknowledgement: in flight at the kill, yet durable. */
  unacknowledgedRecovered: number;
  /** Keys of earlier runs in the same directory (another prefix): not judged. */
  otherKeys: number;
  /** A few keys of each kind of failure, to look at with `corewal dump`. */
  examples: { lost: string[]; wrong: string[]; corrupt: string[] };
  ok: boolean;
}

const EXAMPLES = 5;

export function checkRecovered(state: StateView, acked: ArrayLike<number>, prefix: string, valueBytes: number): DemoCheck {
  // The ids are 0, 1, 2, … in the order the producers took them: a bitmap marks them.
  let max = -1;
  for (let i = 0; i < acked.length; i++) if (acked[i]! > max) max = acked[i]!;
  const isAcked = new Uint8Array(max + 1);
  let acknowledged = 0;
  const examples: DemoCheck['examples'] = { lost: [], wrong: [], corrupt: [] };
  const note = (list: string[], key: string): void => { if (list.length < EXAMPLES) list.push(key); };
  let lost = 0, wrong = 0;
  for (let i = 0; i < acked.length; i++) {
    const id = acked[i]!;
    if (isAcked[id] === 1) continue;
    isAcked[id] = 1;
    acknowledged++;
    const key = `${prefix}${id}`;
    const v = state.get(key);
    if (v === undefined) { lost++; note(examples.lost, key); }
    else if (!sameBytes(v, ingestValue(key, valueBytes))) { wrong++; note(examples.wrong, key); }
  }
  const prefixBytes = Buffer.from(prefix, 'utf8');
  let recovered = 0, corrupt = 0, unacked = 0, other = 0;
  for (const [k, v] of state.entries()) {
    const kb = Buffer.from(k.buffer, k.byteOffset, k.byteLength);
    if (kb.length < prefixBytes.length || !kb.subarray(0, prefixBytes.length).equals(prefixBytes)) { other++; continue; }
    recovered++;
    const key = kb.toString('utf8');
    const rest = key.slice(prefix.length);
    const id = /^(0|[1-9][0-9]*)$/.test(rest) ? Number(rest) : NaN;
    if (!Number.isSafeInteger(id)) { corrupt++; note(examples.corrupt, key); continue; }
    if (id <= max && isAcked[id] === 1) continue; // judged above
    unacked++;
    if (!sameBytes(v, ingestValue(key, valueBytes))) { corrupt++; note(examples.corrupt, key); }
  }
  return {
    acknowledged, recovered, lost, wrong, corrupt, unacknowledgedRecovered: unacked, otherKeys: other, examples,
    ok: lost === 0 && wrong === 0 && corrupt === 0,
  };
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b);
}
