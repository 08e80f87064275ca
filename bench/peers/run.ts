/**
 * `npm run bench:peers`: corewal beside classic-level, lmdb-js, better-sqlite3 and a plain
 * fs loop, the same workloads in one process. Writes bench/results/peers-<date>.{json,md,svg}
 * and, for a full run, copies the chart to docs/peers.svg.
 *
 *   node dist/bench/peers/run.js [--seconds 1.5] [--repeat 2] [--filter RE] [--json] [--smoke] [--out DIR]
 *   node dist/bench/peers/run.js --from bench/results/peers-<date>.json   (tables and chart again from a run's JSON)
 */
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { peersChart } from './chart.js';
import { peersInstalled, repoRoot } from './load.js';
import { peersMarkdown } from './report.js';
import { runPeers } from './suite.js';
import type { PeersDoc } from './types.js';

export interface WrittenFiles {
  json: string;
  md: string;
  svg: string;
  docsSvg: string | null;
}

/** Writes the JSON, the markdown and the chart; a full, unfiltered run also updates docs/peers.svg. */
export function writeResults(doc: PeersDoc, outDir: string, options: { json?: boolean } = {}): WrittenFiles {
  mkdirSync(outDir, { recursive: true });
  const partial = doc.smoke ? '-smoke' : doc.filter ? '-partial' : '';
  const base = join(outDir, `peers-${doc.date.slice(0, 10)}${partial}`);
  const files: WrittenFiles = { json: `${base}.json`, md: `${base}.md`, svg: `${base}.svg`, docsSvg: null };
  if (options.json ?? true) writeFileSync(files.json, JSON.stringify(doc, null, 2) + '\n');
  writeFileSync(files.md, peersMarkdown(doc));
  writeFileSync(files.svg, peersChart(doc));
  if (!partial) {
    files.docsSvg = join(repoRoot, 'docs', 'peers.svg');
    copyFileSync(files.svg, files.docsSvg);
  }
  return files;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      seconds: { type: 'string' }, repeat: { type: 'string' }, filter: { type: 'string' },
      json: { type: 'boolean' }, smoke: { type: 'boolean' }, out: { type: 'string' }, from: { type: 'string' },
    },
  });
  if (values.from !== undefined) {
    // The figures stay those of the run; only the markdown and the chart are drawn again.
    const doc = JSON.parse(readFileSync(values.from, 'utf8')) as PeersDoc;
    const files = writeResults(doc, values.out ?? dirname(values.from), { json: false });
    process.stdout.write(`wrote ${[files.md, files.svg, files.docsSvg].filter(Boolean).join(', ')}\n`);
    return;
  }
  if (!peersInstalled()) {
    process.stderr.write('bench/peers/node_modules is missing: run `npm install --prefix bench/peers` (npm run bench:peers does).\n');
    process.exit(1);
  }
  const args = process.argv.slice(2).join(' ');
  const doc = await runPeers({
    seconds: values.seconds === undefined ? undefined : Number(values.seconds),
    repeat: values.repeat === undefined ? undefined : Number(values.repeat),
    filter: values.filter, smoke: values.smoke,
    command: `npm run bench:peers${args ? ` -- ${args}` : ''}`,
  });
  const files = writeResults(doc, values.out ?? join(repoRoot, 'bench', 'results'));
  if (values.json) process.stdout.write(JSON.stringify(doc, null, 2) + '\n');
  else {
    process.stdout.write(peersMarkdown(doc));
    process.stdout.write(`\nwrote ${[files.json, files.md, files.svg, files.docsSvg].filter(Boolean).join(', ')}\n`);
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await main();
