import { existsSync, mkdtempSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { median, type BenchCase, type CaseResult } from './harness.js';

const here = dirname(fileURLToPath(import.meta.url));

export interface RunOptions {
  filter?: string;
  seconds?: number;
  smoke?: boolean;
  json?: boolean;
  out?: string | null;
  log?: (line: string) => void;
}

/** Loads every case module in bench/cases. */
export async function loadCases(): Promise<BenchCase[]> {
  const dir = join(here, 'cases');
  // tsc emits no directory for an empty bench/cases: no directory means no cases yet.
  if (!existsSync(dir)) return [];
  const files = readdirSync(dir).filter((f) => f.endsWith('.js')).sort();
  const out: BenchCase[] = [];
  for (const f of files) {
    const mod = (await import(pathToFileURL(join(dir, f)).href)) as { cases?: BenchCase[] };
    if (Array.isArray(mod.cases)) out.push(...mod.cases);
  }
  return out;
}

/** Runs the suite; returns results (and writes JSON + markdown unless `out` is null). */
export async function runBench(opts: RunOptions = {}): Promise<CaseResult[]> {
  const log = opts.log ?? ((l: string) => process.stdout.write(l + '\n'));
  const smoke = opts.smoke ?? false;
  const seconds = opts.seconds ?? (smoke ? 0.05 : 2);
  const re = opts.filter ? new RegExp(opts.filter, 'i') : null;
  const cases = (await loadCases()).filter((c) => !re || re.test(`${c.group} ${c.name}`));
  const results: CaseResult[] = [];
  for (const c of cases) {
    const repeat = smoke ? 1 : (c.repeat ?? 3);
    const runs: Map<string, { name: string; unit: string; values: number[] }> = new Map();
    for (let i = 0; i < repeat; i++) {
      const dir = mkdtempSync(join(tmpdir(), 'corewal-bench-'));
      try {
        for (const m of await c.run({ seconds, smoke, dir })) {
          const key = `${m.name}\u0000${m.unit}`;
          const r = runs.get(key) ?? { name: m.name, unit: m.unit, values: [] };
          r.values.push(m.value);
          runs.set(key, r);
        }
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }
    const res: CaseResult = {
      group: c.group, name: c.name,
      metrics: [...runs.values()].map((r) => ({
        name: r.name, unit: r.unit, median: median(r.values), min: Math.min(...r.values), max: Math.max(...r.values), runs: r.values,
      })),
    };
    results.push(res);
    if (!opts.json) log(`${c.group} / ${c.name}: ` + res.metrics.map((m) => `${m.name}=${fmt(m.median)} ${m.unit}`).join(', '));
  }
  // A filter matching nothing must not overwrite the day's tracked results with an empty run.
  const emptyOverTracked = cases.length === 0 && opts.out === undefined;
  if (emptyOverTracked) process.stderr.write(`bench: no case matches --filter ${opts.filter ?? ''}; bench/results left alone\n`);
  if (opts.out !== null && !emptyOverTracked) {
    const outDir = opts.out ?? join(here, '..', '..', 'bench', 'results');
    mkdirSync(outDir, { recursive: true });
    const date = new Date().toISOString().slice(0, 10);
    const doc = { date: new Date().toISOString(), machine: machine(), seconds, smoke, results };
    writeFileSync(join(outDir, `${date}.json`), JSON.stringify(doc, null, 2));
    writeFileSync(join(outDir, `${date}.md`), markdown(doc.machine, results));
  }
  if (opts.json) log(JSON.stringify({ machine: machine(), results }, null, 2));
  return results;
}

export function machine(): string {
  const c = cpus();
  return `${c.length} x ${c[0]?.model ?? 'cpu'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}, ${process.platform}`;
}

export function fmt(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  if (a >= 1e6) return (v / 1e6).toFixed(2) + 'M';
  if (a >= 1e4) return (v / 1e3).toFixed(1) + 'k';
  if (a >= 100) return v.toFixed(0);
  return v.toFixed(2);
}

export function markdown(machineLine: string, results: CaseResult[]): string {
  const lines: string[] = [`Machine: ${machineLine}`, ''];
  const groups = [...new Set(results.map((r) => r.group))];
  for (const g of groups) {
    lines.push(`### ${g}`, '', '| case | metric | median | min–max |', '|---|---|---|---|');
    for (const r of results.filter((x) => x.group === g)) {
      for (const m of r.metrics) lines.push(`| ${r.name} | ${m.name} (${m.unit}) | ${fmt(m.median)} | ${fmt(m.min)}–${fmt(m.max)} |`);
    }
    lines.push('');
  }
  return lines.join('\n');
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const { values } = parseArgs({
    options: {
      filter: { type: 'string' }, seconds: { type: 'string' }, json: { type: 'boolean' }, smoke: { type: 'boolean' },
    },
  });
  await runBench({
    filter: values.filter, seconds: values.seconds ? Number(values.seconds) : undefined, json: values.json, smoke: values.smoke,
  });
}
