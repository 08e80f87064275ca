import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** The compiled `corewal` entry point (dist/src/cli/main.js). */
export const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `corewal …` as a child process with pipes (not a terminal) for stdin, stdout and stderr. */
export function corewal(args: string[], input = ''): CliRun {
  const r = spawnSync(process.execPath, [CLI, ...args], { input, encoding: 'utf8', timeout: 60_000 });
  if (r.error) throw r.error;
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** JSON from stdout, failing with the whole run in the message if it is not JSON. */
export function json<T = any>(run: CliRun): T {
  try {
    return JSON.parse(run.stdout) as T;
  } catch {
    throw new Error(`not JSON (exit ${run.code}):\n${run.stdout}\n--- stderr ---\n${run.stderr}`);
  }
}

const shellQuote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

/**
 * Runs `corewal …` inside a pseudo-terminal with util-linux `script`, the way a person
 * at a terminal runs it; returns everything the terminal received. `null` if `script`
 * is not installed.
 */
export function corewalInTerminal(args: string[], input = ''): CliRun | null {
  const which = spawnSync('script', ['--version'], { encoding: 'utf8' });
  if (which.error) return null;
  const cmd = [process.execPath, CLI, ...args].map(shellQuote).join(' ');
  const r = spawnSync('script', ['-qfec', cmd, '/dev/null'], {
    input, encoding: 'utf8', timeout: 60_000, env: { ...process.env, TERM: 'xterm-256color', COLUMNS: '120' },
  });
  if (r.error) throw r.error;
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/**
 * Runs `corewal …` in a detached tmux pane of `rows` x `cols` and returns the screen as a
 * person would see it once the command has exited (what a terminal made of the escape
 * sequences, not the raw bytes). `null` if tmux is not installed.
 */
export async function corewalScreen(args: string[], rows = 20, cols = 160): Promise<{ code: number; screen: string } | null> {
  if (spawnSync('tmux', ['-V']).error) return null;
  const socket = `corewal-test-${process.pid}-${Math.random().toString(36).slice(2)}`;
  const tmux = (...a: string[]) => spawnSync('tmux', ['-L', socket, ...a], { encoding: 'utf8' });
  const cmd = `${[process.execPath, CLI, ...args].map(shellQuote).join(' ')}; echo "__EXIT=$?"; sleep 60`;
  const started = tmux('new-session', '-d', '-s', 'cw', '-x', String(cols), '-y', String(rows), cmd);
  if (started.status !== 0) throw new Error(`tmux failed: ${started.stderr}`);
  try {
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      const screen = tmux('capture-pane', '-p', '-t', 'cw').stdout;
      const m = /__EXIT=(\d+)/.exec(screen);
      if (m !== null) return { code: Number(m[1]), screen: screen.slice(0, m.index).trimEnd() };
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`corewal ${args.join(' ')} did not finish in tmux within 30 s`);
  } finally {
    tmux('kill-server');
  }
}
