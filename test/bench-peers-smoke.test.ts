import assert from 'node:assert/strict';
import { test } from 'node:test';
import { peersChart } from '../bench/peers/chart.js';
import { peersInstalled } from '../bench/peers/load.js';
import { peersMarkdown } from '../bench/peers/report.js';
import { runPeers } from '../bench/peers/suite.js';
import type { TableId } from '../bench/peers/types.js';

// Keeps `npm run bench:peers` honest: every row runs and reports numbers, and the chart is
// drawn. Nothing here is about speed. The peer libraries are installed on demand
// (npm install --prefix bench/peers), so without them this test is skipped.
const skip = peersInstalled() ? false : 'bench/peers/node_modules is not installed (npm install --prefix bench/peers): peers smoke skipped';

test('bench:peers smoke: every row has finite figures, the chart has one line per system', { skip, timeout: 120_000 }, async () => {
  const doc = await runPeers({ smoke: true, log: () => {} });
  const systems = doc.systems.filter((s) => s.tables.includes('durable')).map((s) => s.name);
  assert.deepEqual(systems.map((s) => s.replace(/ \(\d+ workers?\)$/, '')), ['corewal', 'corewal pool', 'classic-level', 'better-sqlite3', 'lmdb-js', 'fs loop']);
  for (const table of ['durable', 'non-durable', 'read-back']) {
    const rows = doc.rows.filter((r) => r.table === table);
    const workloads = new Set(rows.map((r) => r.workloadId));
    const inTable = doc.systems.filter((s) => s.tables.includes(table as TableId)).length;
    assert.ok(inTable >= 5, `${table}: corewal and the four others at least`);
    assert.equal(rows.length, workloads.size * inTable, `${table}: every system ran every workload`);
  }
  for (const r of doc.rows) {
    const what = `${r.table} / ${r.workload} / ${r.system}`;
    // The lmdb-flush aside has no fs loop to be quoted against.
    const figures = [r.recordsPerSec, r.mibPerSec, r.commitsPerSec, r.vsLmdb, ...(r.table === 'lmdb-flush' ? [] : [r.vsFs])];
    for (const v of figures) {
      assert.ok(typeof v === 'number' && Number.isFinite(v) && v > 0, `${what}: ${v}`);
    }
    if (r.table === 'read-back') assert.equal(r.p50Ms, null);
    else for (const v of [r.p50Ms, r.p99Ms]) assert.ok(typeof v === 'number' && Number.isFinite(v) && v >= 0, `${what}: latency ${v}`);
  }
  assert.equal(doc.rows.filter((r) => r.table === 'lmdb-flush').length, 4, 'lmdb-flush aside: 2 workloads x 2 ways');
  for (const p of [1, 64, 256]) {
    assert.ok(doc.rows.some((r) => r.table === 'durable' && r.producers === p && r.perCommit === 1), `durable row with ${p} producers`);
  }

  const svg = peersChart(doc);
  assert.ok(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"'), 'starts with <svg');
  assert.ok(svg.trimEnd().endsWith('</svg>'));
  assert.equal((svg.match(/<svg\b/g) ?? []).length, 1);
  const lines = [...svg.matchAll(/<polyline class="series" data-system="([^"]+)" points="([^"]+)"/g)];
  assert.deepEqual(lines.map((m) => m[1]), systems, 'one polyline per system');
  for (const m of lines) {
    const pts = m[2]!.split(' ');
    assert.equal(pts.length, 3, `${m[1]}: a point at 1, 64 and 256 producers`);
    for (const p of pts) assert.match(p, /^-?\d+(\.\d+)?,-?\d+(\.\d+)?$/);
  }
  // Balanced elements: every opened tag is closed or self-closing.
  const open = (svg.match(/<[a-z]+(?:\s[^>]*)?(?<!\/)>/g) ?? []).length;
  const close = (svg.match(/<\/[a-z]+>/g) ?? []).length;
  assert.equal(open, close, 'every element closed');
  assert.ok(!/&(?!amp;|lt;|gt;|quot;)/.test(svg), 'text escaped');

  const md = peersMarkdown(doc);
  for (const s of systems) assert.ok(md.includes(`| ${s} |`), `markdown has ${s}`);
});
