import { machineLine } from './machine.js';
import { ms, rate, ratio, sig } from './format.js';
import type { PeerRow, PeersDoc, TableId } from './types.js';

const TITLES: Record<TableId, string> = {
  'durable': 'Durable commits',
  'non-durable': 'Non-durable commits (no sync: handed to the OS)',
  'read-back': 'Read-back and recovery (open, then recover or iterate every record; warm page cache)',
  'lmdb-flush': 'Aside: lmdb-js awaiting the flush, or only the put promise (resolved at commit, before the flush: not durable yet)',
};

/** The markdown tables of a peers run: per table a records/s matrix, then every row with its ratios. */
export function peersMarkdown(doc: PeersDoc): string {
  const out: string[] = [
    `Measured ${doc.date.slice(0, 16).replace('T', ' ')} UTC on ${machineLine(doc.machine)}.`,
    `Command: \`${doc.command}\` (${doc.seconds} s per figure, ${doc.repeat === 1 ? 'one run' : `median of ${doc.repeat} runs`}${doc.filter ? `, filter /${doc.filter}/` : ''}${doc.smoke ? ', SMOKE MODE: not figures to quote' : ''}; the run took ${Math.round(doc.elapsedSecs)} s).`,
    '',
  ];
  for (const table of Object.keys(TITLES) as TableId[]) {
    const rows = doc.rows.filter((r) => r.table === table);
    if (rows.length === 0) continue;
    const systems = [...new Set(rows.map((r) => r.system))];
    out.push(`### ${TITLES[table]}: records/s`, '', matrix(rows, systems, table !== 'lmdb-flush'), '', `#### ${TITLES[table]}: details${doc.repeat > 1 ? ` (median of ${doc.repeat} runs, range = min–max)` : ''}`, '', details(rows, table), '');
  }
  out.push('### How each system is run', '');
  for (const s of doc.systems) out.push(`- **${s.name}**: ${s.notes}.`);
  out.push('');
  return out.join('\n');
}

function workloads(rows: PeerRow[]): string[] {
  return [...new Set(rows.map((r) => r.workload))];
}

/** Workloads down, systems across, the fastest of each row in bold (not in the aside, where the faster is not durable). */
function matrix(rows: PeerRow[], systems: string[], bold: boolean): string {
  const lines = [`| workload | ${systems.join(' | ')} |`, `|---|${systems.map(() => '---:').join('|')}|`];
  for (const w of workloads(rows)) {
    const inRow = rows.filter((r) => r.workload === w);
    const best = Math.max(...inRow.map((r) => r.recordsPerSec));
    const cells = systems.map((s) => {
      const r = inRow.find((x) => x.system === s);
      if (!r) return '–';
      return bold && r.recordsPerSec === best ? `**${rate(r.recordsPerSec)}**` : rate(r.recordsPerSec);
    });
    lines.push(`| ${w} | ${cells.join(' | ')} |`);
  }
  return lines.join('\n');
}

function details(rows: PeerRow[], table: TableId): string {
  const latency = table !== 'read-back';
  const vsFs = rows.some((r) => r.vsFs !== null);
  const head = ['workload', 'system', 'records/s', 'range', 'MiB/s'];
  if (latency) head.push('commits/s', 'commit p50', 'commit p99');
  head.push('vs lmdb-js');
  if (vsFs) head.push('vs fs loop');
  const lines = [`| ${head.join(' | ')} |`, `|---|---|${head.slice(2).map(() => '---:').join('|')}|`];
  for (const w of workloads(rows)) {
    for (const [i, r] of rows.filter((x) => x.workload === w).entries()) {
      const range = r.runs.length > 1 ? `${rate(Math.min(...r.runs))}–${rate(Math.max(...r.runs))}` : '–';
      const cells = [i === 0 ? w : '', r.system, rate(r.recordsPerSec), range, sig(r.mibPerSec)];
      if (latency) cells.push(rate(r.commitsPerSec), ms(r.p50Ms), ms(r.p99Ms));
      cells.push(ratio(r.vsLmdb));
      if (vsFs) cells.push(ratio(r.vsFs));
      lines.push(`| ${cells.join(' | ')} |`);
    }
  }
  return lines.join('\n');
}
