import { PerCoreWalError } from '../errors/errors.js';

export const U64_MAX = (1n << 64n) - 1n;
export const I64_MIN = -(1n << 63n);
export const I64_MAX = (1n << 63n) - 1n;
export const TWO_32 = 4294967296;

/** Validates a u64 parameter given as bigint or safe-integer number. Cold path. */
export function toU64(value: unknown, name: string): bigint {
  if (typeof value === 'bigint') {
    if (value < 0n || value > U64_MAX) throw new PerCoreWalError('INVALID_ARGUMENT', `${name} must be a u64, got ${value}`);
    return value;
  }
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new PerCoreWalError('INVALID_ARGUMENT', `${name} must be a non-negative safe integer or bigint, got ${value}`);
    }
    return BigInt(value);
  }
  throw new PerCoreWalError('INVALID_ARGUMENT', `${name} must be a bigint or number, got ${typeof value}`);
}

/** Validates an i64 parameter given as bigint or safe-integer number. */
export function toI64(value: unknown, name: string): bigint {
  if (typeof value === 'bigint') {
    if (value < I64_MIN || value > I64_MAX) throw new PerCoreWalError('INVALID_ARGUMENT', `${name} must be an i64, got ${value}`);
    return value;
  }
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value)) throw new PerCoreWalError('INVALID_ARGUMENT', `${name} must be a safe integer or bigint, got ${value}`);
    return BigInt(value);
  }
  throw new PerCoreWalError('INVALID_ARGUMENT', `${name} must be a bigint or number, got ${typeof value}`);
}

/** Validates a byte position / length / count: a non-negative safe integer number. */
export function toPosition(value: unknown, name: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new PerCoreWalError('INVALID_POSITION', `${name} must be a non-negative safe integer, got ${String(value)}`);
  }
  return value;
}

export function toCoreId(value: unknown, numCores = 65536): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value >= numCores || value > 0xffff) {
    throw new PerCoreWalError('INVALID_CORE_ID', `core id must be an integer in [0, ${Math.min(numCores, 65536)}), got ${String(value)}`);
  }
  return value;
}

export function requireBytes(value: unknown, name: string): Uint8Array {
  if (!(value instanceof Uint8Array)) {
    throw new PerCoreWalError('INVALID_ARGUMENT', `${name} must be a Uint8Array (or Buffer), got ${value === null ? 'null' : typeof value}`);
  }
  return value;
}

/** Splits a u64 into its high and low 32-bit halves (numbers) so the hot path never touches bigint. */
export function hi32(v: bigint): number { return Number(v >> 32n); }
export function lo32(v: bigint): number { return Number(v & 0xffffffffn); }
export function joinU64(hi: number, lo: number): bigint { return (BigInt(hi) << 32n) | BigInt(lo); }
