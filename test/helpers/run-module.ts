import { spawnSync, type SpawnSyncReturns } from 'node:child_process';

/**
 * Runs `script` as an ES module in a fresh node (a process of its own: for what must not
 * touch the test runner's process — addon switches, exits, crashes, open handles).
 */
export function runModule(script: string, options: { env?: NodeJS.ProcessEnv; timeout?: number } = {}): SpawnSyncReturns<string> {
  return spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    encoding: 'utf8', timeout: options.timeout ?? 30_000, env: options.env ?? process.env,
  });
}
