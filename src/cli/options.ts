import { InvalidArgumentError, type Command } from 'commander';
import type { WalOperationType } from '../entry/entry.js';
import { DEFAULT_PATTERN } from './segments.js';

/** Flags shared by the commands that read a WAL directory. */
export interface CommonFlags {
  pattern: string;
  json?: boolean;
  progress?: boolean;
}

export function withPattern(cmd: Command): Command {
  return cmd.option('--pattern <pattern>', 'segment file name, with {core_id} where the core id goes', DEFAULT_PATTERN);
}

export function withJson(cmd: Command, description: string): Command {
  return cmd.option('--json', description);
}

export function withProgress(cmd: Command): Command {
  return cmd.option('--no-progress', 'never draw a progress bar (it is off anyway when stdout is not a terminal)');
}

/** A u64 in decimal, as bigint. */
export function parseU64(value: string): bigint {
  if (!/^(0|[1-9][0-9]*)$/.test(value)) throw new InvalidArgumentError(`expected a non-negative integer, got "${value}"`);
  const n = BigInt(value);
  if (n >= 1n << 64n) throw new InvalidArgumentError(`${value} does not fit in 64 bits`);
  return n;
}

/** "0,2,5" → [0, 2, 5]. Repeating the option adds to the list. */
export function parseCoreList(value: string, previous: number[] = []): number[] {
  const out = [...previous];
  for (const part of value.split(',')) {
    const s = part.trim();
    if (!/^(0|[1-9][0-9]{0,4})$/.test(s) || Number(s) > 0xffff) throw new InvalidArgumentError(`core ids are integers in [0, 65535], got "${part}"`);
    out.push(Number(s));
  }
  return out;
}

export const OPERATIONS: readonly WalOperationType[] = ['put', 'delete', 'checkpoint', 'commit', 'epochBarrier'];

/** "put,delete" → ['put', 'delete']. */
export function parseOpList(value: string, previous: WalOperationType[] = []): WalOperationType[] {
  const out = [...previous];
  for (const part of value.split(',')) {
    const s = part.trim();
    const op = OPERATIONS.find((o) => o.toLowerCase() === s.toLowerCase());
    if (op === undefined) throw new InvalidArgumentError(`unknown operation "${part}"; one of ${OPERATIONS.join(', ')}`);
    out.push(op);
  }
  return out;
}

export function parsePositive(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`expected a positive number, got "${value}"`);
  return n;
}

export function parseNonNegativeInt(value: string): number {
  if (!/^(0|[1-9][0-9]*)$/.test(value) || !Number.isSafeInteger(Number(value))) {
    throw new InvalidArgumentError(`expected a non-negative integer, got "${value}"`);
  }
  return Number(value);
}
