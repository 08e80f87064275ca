import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { tempDir } from './helpers/tmp.js';

const root = fileURLToPath(new URL('../../', import.meta.url));

/** Every ```ts block of README.md that imports corewal, in order. */
function snippets(): string[] {
  const md = readFileSync(join(root, 'README.md'), 'utf8');
  return [...md.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]!).filter((s) => s.includes("from 'corewal'"));
}

test('every README example compiles and runs against the built package', { timeout: 120_000 }, () => {
  const blocks = snippets();
  assert.ok(blocks.length >= 1, 'README has runnable examples');
  // Snippets run from inside the package so that `import 'corewal'` resolves to this build.
  const outDir = join(root, 'dist', 'readme-snippets');
  mkdirSync(outDir, { recursive: true });
  blocks.forEach((src, i) => {
    const dir = tempDir();
    const code = ts.transpileModule(src.replaceAll('/tmp/corewal-tour', dir), {
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
    }).outputText;
    const file = join(outDir, `snippet-${i}.mjs`);
    writeFileSync(file, code);
    const r = spawnSync(process.execPath, [file], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.status, 0, `README example ${i + 1} failed:\n${src}\n--- stderr ---\n${r.stderr}`);
  });
});
