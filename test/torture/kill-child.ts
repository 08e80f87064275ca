// Child process for the SIGKILL tests. Resumes (or creates) a log, then appends and syncs
// in a loop until the parent kills it, printing after every successful sync
// `ack <synced position> <last sequence of core 0> [<last sequence of core 1> …]`.
// Usage: kill-child.js writer <segment> <seed> <preallocate>
//        kill-child.js manager <dir> <seed> <preallocate> <cores>
import { writeSync } from 'node:fs';
import { CoreWalWriter, PerCoreWalConfig, PerCoreWalManager, scanSegment } from '../../src/index.js';
import { Rng } from '../../src/testing/index.js';
import { killKey, killValue } from './kill-values.js';

const [mode, path, seedArg, preallocArg, coresArg] = process.argv.slice(2);
const rng = new Rng(Number(seedArg));
const preallocate = Number(preallocArg);
const say = (line: string): void => { writeSync(1, line + '\n'); };

function append(w: CoreWalWriter): bigint {
  const seq = w.sequence();
  if (rng.bool(0.1)) w.appendDelete(killKey(w.coreId(), seq));
  else w.appendPut(killKey(w.coreId(), seq), killValue(seq));
  return seq;
}

if (mode === 'writer') {
  let w: CoreWalWriter;
  try {
    const scan = scanSegment(0, path!);
    if (scan.tail === 'damaged') {
      say(`damaged ${scan.bad?.position}`);
      process.exit(3);
    }
    w = CoreWalWriter.openAt(0, path!, scan.validEnd, { preallocate });
  } catch (e) {
    if ((e as { code?: string }).code !== 'SEGMENT_NOT_FOUND') throw e;
    w = CoreWalWriter.create(0, path!, { preallocate });
  }
  say(`ready ${w.sequence()}`);
  for (;;) {
    let last = -1n;
    for (let i = rng.range(1, 40); i > 0; i--) last = append(w);
    w.sync();
    say(`ack ${w.syncedPosition()} ${last}`);
  }
} else {
  const config = new PerCoreWalConfig(path!, Number(coresArg), { preallocate });
  let m: PerCoreWalManager;
  try {
    m = PerCoreWalManager.open(config);
  } catch (e) {
    if ((e as { code?: string }).code !== 'SEGMENT_NOT_FOUND') throw e;
    m = PerCoreWalManager.create(config);
  }
  say(`ready ${m.epoch()}`);
  const last = Array.from({ length: m.numCores() }, (_, c) => m.writer(c).sequence() - 1n);
  for (;;) {
    for (let i = rng.range(1, 60); i > 0; i--) {
      const c = rng.int(m.numCores());
      last[c] = append(m.writer(c));
      if (rng.bool(0.02)) m.advanceEpoch();
    }
    m.syncAll();
    say(`ack ${m.epoch()} ${last.join(' ')}`);
  }
}
