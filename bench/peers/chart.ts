import { rate } from './format.js';
import { FS_LOOP } from './names.js';
import type { PeersDoc } from './types.js';

const W = 800, H = 440;
const PLOT = { left: 78, right: W - 230, top: 64, bottom: H - 58 };
const PRODUCERS = [1, 64, 256] as const;
const X_TICKS = [1, 4, 16, 64, 256];
// By name, so a system keeps its colour when the set of systems changes.
const COLORS: Record<string, string> = {
  'corewal': '#d62728', 'classic-level': '#2ca02c', 'better-sqlite3': '#9467bd', 'lmdb-js': '#1f77b4', 'fs loop': '#7f7f7f',
};
const SPARE = ['#ff7f0e', '#8c564b', '#17becf', '#e377c2', '#bcbd22'];
const colorOf = (name: string, i: number): string => COLORS[name] ?? (name.startsWith('corewal') ? '#ff7f0e' : SPARE[i % SPARE.length]!);

const decade = (v: number): string => (v >= 1e6 ? `${v / 1e6}M` : v >= 1e3 ? `${v / 1e3}k` : String(v));
const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** Points of one system: durable records/s at 1 producer (one record per commit), 64 and 256 producers. */
function series(doc: PeersDoc, system: string, valueSize: number): { producers: number; rps: number }[] {
  const pts: { producers: number; rps: number }[] = [];
  for (const p of PRODUCERS) {
    const r = doc.rows.find((x) => x.table === 'durable' && x.system === system && x.valueSize === valueSize && x.perCommit === 1 && x.producers === p);
    if (r && Number.isFinite(r.recordsPerSec) && r.recordsPerSec > 0) pts.push({ producers: p, rps: r.recordsPerSec });
  }
  return pts;
}

/**
 * Durable records/s (log scale) against concurrent producers (log2 scale: 1, 64, 256), one
 * polyline per system, 100 B values: a hand-written SVG, no dependency.
 */
export function peersChart(doc: PeersDoc, valueSize = 100): string {
  const systems = doc.systems.filter((s) => s.tables.includes('durable')).map((s) => s.name);
  const all = systems.map((s) => ({ name: s, pts: series(doc, s, valueSize) }));
  const values = all.flatMap((s) => s.pts.map((p) => p.rps));
  const lo = Math.floor(Math.log10(values.length ? Math.min(...values) : 1));
  const hi = Math.max(lo + 1, Math.ceil(Math.log10(values.length ? Math.max(...values) : 10)));
  const x = (p: number) => PLOT.left + (Math.log2(p) / 8) * (PLOT.right - PLOT.left);
  const y = (v: number) => PLOT.bottom - ((Math.log10(v) - lo) / (hi - lo)) * (PLOT.bottom - PLOT.top);
  const f = (n: number) => n.toFixed(1);
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="#ffffff"/>`,
    `<text x="${W / 2}" y="24" text-anchor="middle" font-size="16" font-weight="bold">Durable records/s against concurrent producers (${valueSize} B values)</text>`,
    `<text x="${W / 2}" y="44" text-anchor="middle" fill="#555555">${esc(`${doc.date.slice(0, 10)} · ${doc.machine.nproc} x ${doc.machine.cpu} · Node ${doc.machine.node} · ${doc.machine.filesystem.split(' ')[0]}${doc.smoke ? ' · SMOKE' : ''}`)}</text>`,
  ];
  for (let d = lo; d <= hi; d++) {
    const v = 10 ** d;
    out.push(`<line x1="${PLOT.left}" x2="${PLOT.right}" y1="${f(y(v))}" y2="${f(y(v))}" stroke="#dddddd"/>`);
    out.push(`<text x="${PLOT.left - 8}" y="${f(y(v) + 4)}" text-anchor="end">${decade(v)}</text>`);
    if (d < hi) {
      for (const m of [2, 5]) out.push(`<line x1="${PLOT.left}" x2="${PLOT.right}" y1="${f(y(m * v))}" y2="${f(y(m * v))}" stroke="#f0f0f0"/>`);
    }
  }
  for (const p of X_TICKS) {
    out.push(`<line x1="${f(x(p))}" x2="${f(x(p))}" y1="${PLOT.top}" y2="${PLOT.bottom}" stroke="#eeeeee"/>`);
    out.push(`<text x="${f(x(p))}" y="${PLOT.bottom + 18}" text-anchor="middle">${p}</text>`);
  }
  out.push(`<rect x="${PLOT.left}" y="${PLOT.top}" width="${PLOT.right - PLOT.left}" height="${PLOT.bottom - PLOT.top}" fill="none" stroke="#888888"/>`);
  out.push(`<text x="${(PLOT.left + PLOT.right) / 2}" y="${H - 18}" text-anchor="middle">concurrent producers, each awaiting its own durable write (1 = one record per commit)</text>`);
  out.push(`<text transform="translate(18 ${(PLOT.top + PLOT.bottom) / 2}) rotate(-90)" text-anchor="middle">durable records/s (log scale)</text>`);
  for (const [i, s] of all.entries()) {
    const color = colorOf(s.name, i);
    const width = s.name.startsWith('corewal') ? 3 : 2;
    // The fs loop dashed: a floor to read against, not a library.
    const dash = s.name === FS_LOOP ? ' stroke-dasharray="6 4"' : '';
    const pts = s.pts.map((p) => `${f(x(p.producers))},${f(y(p.rps))}`).join(' ');
    out.push(`<polyline class="series" data-system="${esc(s.name)}" points="${pts}" fill="none" stroke="${color}" stroke-width="${width}"${dash}/>`);
    for (const p of s.pts) {
      out.push(`<circle cx="${f(x(p.producers))}" cy="${f(y(p.rps))}" r="3.5" fill="${color}"><title>${esc(`${s.name}, ${p.producers} producer${p.producers > 1 ? 's' : ''}: ${rate(p.rps)} records/s`)}</title></circle>`);
    }
    const ly = PLOT.top + 10 + i * 22;
    out.push(`<line x1="${PLOT.right + 16}" x2="${PLOT.right + 40}" y1="${ly}" y2="${ly}" stroke="${color}" stroke-width="${width}"${dash}/>`);
    out.push(`<text x="${PLOT.right + 46}" y="${ly + 4}">${esc(s.name)}</text>`);
  }
  out.push('</svg>');
  return out.join('\n') + '\n';
}
