// Child process for the SIGKILL tests: resumes (or creates) one segment, then appends and
// syncs in a loop, printing `ack <lastSequence> <syncedPosition>` after every successful
// sync, until the parent kills it. Usage: kill-child.js <segment> <seed> <preallocate>
import { writeSync } from 'node:fs';
import { CoreWalWriter, scanSegment } from '../../src/index.js';
import { Rng } from '../../src/testing/index.js';
import { killValue } from './kill-values.js';

const [path, seedArg, preallocArg] = process.argv.slice(2);
const rng = new Rng(Number(seedArg));
const preallocate = Number(preallocArg);
const say = (line: string): void => { writeSync(1, line + '\n'); };

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
say(`ready ${w.sequence()} ${w.position()}`);
for (;;) {
  const batch = rng.range(1, 40);
  let last = -1n;
  for (let i = 0; i < batch; i++) {
    const seq = w.sequence();
    if (rng.bool(0.1)) w.appendDelete(Buffer.from(`k${seq}`));
    else w.appendPut(Buffer.from(`k${seq}`), killValue(seq));
    last = seq;
  }
  w.sync();
  say(`ack ${last} ${w.syncedPosition()}`);
}
