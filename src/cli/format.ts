import { basename } from 'node:path';
import type { PerCoreWalEntry } from '../entry/entry.js';

/** 1536 → "1.5 KiB". Exact byte counts go in JSON; this is for people. */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) { v /= 1024; u++; }
  return `${v.toFixed(v < 10 ? 2 : 1)} ${units[u]}`;
}

/** "a–b", or "a" when both ends agree, or "-" when there is nothing. */
export function formatRange(a: bigint | null, b: bigint | null): string {
  if (a === null || b === null) return '-';
  return a === b ? String(a) : `${a}–${b}`;
}

export type Align = 'left' | 'right';

/** A plain-text table: a header row, a rule, the rows; columns padded to their widest cell. */
export function table(headers: string[], rows: string[][], align: Align[] = []): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string =>
    cells.map((c, i) => (align[i] === 'right' ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });
// Controls other than tab and line breaks, format characters (bidi overrides can make a
// terminal show other text than the bytes hold; the zero-width joiner of emoji is fine),
// unassigned and private-use code points: bytes that only happen to be valid UTF-8.
const UNPRINTABLE = /[^\P{C}\t\n\r\u200d]|[\u2028\u2029]|^\p{M}/u;

/** Bytes as UTF-8 text when they decode cleanly to printable text, else as hex. */
export function showBytes(bytes: Uint8Array): { text: string; encoding: 'utf8' | 'hex' } {
  try {
    const s = strictUtf8.decode(bytes);
    if (!UNPRINTABLE.test(s)) return { text: s, encoding: 'utf8' };
  } catch {
    // not UTF-8: fall through to hex
  }
  return { text: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex'), encoding: 'hex' };
}

/** For text output: quoted UTF-8 or 0x-prefixed hex, cut to `max` characters (0 = no limit). */
export function bytesForText(bytes: Uint8Array, max: number): string {
  const { text, encoding } = showBytes(bytes);
  const full = encoding === 'utf8' ? JSON.stringify(text) : `0x${text}`;
  if (max <= 0 || full.length <= max) return full;
  return `${full.slice(0, max)}…(${bytes.length} bytes)`;
}

/** ISO-8601 with nanoseconds, e.g. 2025-01-02T03:04:05.123456789Z. */
export function isoNs(ns: bigint): string {
  const ms = ns / 1_000_000n;
  const iso = new Date(Number(ms)).toISOString();
  const frac = (ns % 1_000_000_000n).toString().padStart(9, '0');
  return `${iso.slice(0, 19)}.${frac}Z`;
}

/**
 * One entry as a JSON-ready object. u64/i64 values are decimal strings so that no reader
 * loses precision above 2^53; positions and sizes are numbers.
 */
export function entryJson(e: PerCoreWalEntry, path: string, position: number): Record<string, unknown> {
  const out: Record<string, unknown> = {
    file: basename(path), position, coreId: e.coreId,
    epoch: String(e.epoch), sequence: String(e.sequence), timestampNs: String(e.timestampNs), time: isoNs(e.timestampNs),
    op: e.operation.type,
  };
  const op = e.operation;
  switch (op.type) {
    case 'put': {
      const k = showBytes(op.key), v = showBytes(op.value);
      Object.assign(out, { key: k.text, keyEncoding: k.encoding, value: v.text, valueEncoding: v.encoding, valueSize: op.value.length });
      break;
    }
    case 'delete': {
      const k = showBytes(op.key);
      Object.assign(out, { key: k.text, keyEncoding: k.encoding });
      break;
    }
    case 'checkpoint':
      out.checkpointId = String(op.id);
      break;
    case 'commit':
      out.offsets = Object.fromEntries([...op.offsets].map(([s, o]) => [s, String(o)]));
      out.watermark = op.watermark === null ? null : String(op.watermark);
      break;
    case 'epochBarrier':
      out.barrierEpoch = String(op.epoch);
      break;
  }
  return out;
}

/** One entry as a line of text; values longer than `maxValue` characters are cut (0 = never). */
export function entryText(e: PerCoreWalEntry, path: string, position: number, maxValue: number): string {
  const head = `${basename(path)}@${position}  core ${e.coreId}  epoch ${e.epoch}  seq ${e.sequence}  ${isoNs(e.timestampNs)}  `;
  const op = e.operation;
  switch (op.type) {
    case 'put': return `${head}put ${bytesForText(op.key, maxValue)} = ${bytesForText(op.value, maxValue)}`;
    case 'delete': return `${head}delete ${bytesForText(op.key, maxValue)}`;
    case 'checkpoint': return `${head}checkpoint ${op.id}`;
    case 'commit': {
      const offs = [...op.offsets].map(([s, o]) => `${JSON.stringify(s)}:${o}`).join(', ');
      return `${head}commit {${offs}} watermark ${op.watermark ?? 'none'}`;
    }
    case 'epochBarrier': return `${head}epochBarrier ${op.epoch}`;
  }
}
