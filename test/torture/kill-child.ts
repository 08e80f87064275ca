// Child process for the SIGKILL tests. Resumes (or creates) a log, then appends and syncs
// in a loop until the parent kills it, printing after every successful sync
// `ack <synced position> <last sequence of core 0> [<last sequence of core 1> …]`.
// Usage: kill-child.js writer <segment> <seed> <preallocate>
//        kill-child.js manager <dir> <seed> <preallocate> <cores>
//        kill-child.js checkpoint <dir> <seed> <preallocate> <cores>
//        kill-child.js group <segment> <seed> <preallocate> <backend: sync|threadpool|uring>
// In group mode concurrent GroupCommitLog puts are in flight all the time and each ack line
// lists the sequences whose promises resolved: `ack <seq>,<seq>…`.
// In checkpoint mode the log lives in <dir>/wal with checkpoints in <dir>/checkpoints: the
// child starts from PerCoreRecoveryManager.recover(), checkpoints now and then, and acks
// `ack <core>:<seq>,<seq>… …` listing the puts each sync made durable.
import { writeSync } from 'node:fs';
import {
  CheckpointStore, CoreWalWriter, GroupCommitLog, PerCoreCheckpointCoordinator, PerCoreWalConfig, PerCoreWalManager, recoverPerCore,
  scanSegment, SyncStorageIo, ThreadPoolStorageIo, UringStorageIo, type StorageIo,
} from '../../src/index.js';
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

/** The bare writer of `path`, resumed the way recovery does (scan, then openAt the valid end). */
function resumeWriter(): CoreWalWriter {
  try {
    const scan = scanSegment(0, path!);
    if (scan.tail === 'damaged') {
      say(`damaged ${scan.bad?.position}`);
      process.exit(3);
    }
    return CoreWalWriter.openAt(0, path!, scan.validEnd, { preallocate });
  } catch (e) {
    if ((e as { code?: string }).code !== 'SEGMENT_NOT_FOUND') throw e;
    return CoreWalWriter.create(0, path!, { preallocate });
  }
}

if (mode === 'group') {
  const w = resumeWriter();
  const which = coresArg === 'uring' && !UringStorageIo.isSupported().supported ? 'threadpool' : coresArg;
  const sio: StorageIo = which === 'uring' ? UringStorageIo.create() : which === 'threadpool' ? new ThreadPoolStorageIo() : new SyncStorageIo();
  const log = GroupCommitLog.forWriter(w, { storageIo: sio });
  let done: bigint[] = [];
  let inFlight = 0;
  say(`ready ${w.sequence()} ${which}`);
  const pump = (): void => {
    while (inFlight < 256) {
      const seq = w.sequence();
      inFlight++;
      log.put(killKey(0, seq), killValue(seq)).then(() => { inFlight--; done.push(seq); }, (e: unknown) => {
        say(`error ${String(e)}`);
        process.exit(4);
      });
    }
    if (done.length > 0) {
      say(`ack ${done.join(',')}`);
      done = [];
    }
    setImmediate(pump);
  };
  pump();
} else if (mode === 'writer') {
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
} else if (mode === 'checkpoint') {
  const cores = Number(coresArg);
  const wal = `${path}/wal`, ckpt = `${path}/checkpoints`;
  const config = new PerCoreWalConfig(wal, cores, { preallocate });
  let m: PerCoreWalManager;
  try {
    const rec = recoverPerCore(wal, ckpt, cores);
    m = PerCoreWalManager.open(config, { minEpoch: rec.finalEpoch, minSequences: rec.nextSequences });
  } catch (e) {
    if ((e as { code?: string }).code !== 'SEGMENT_NOT_FOUND') throw e;
    m = PerCoreWalManager.create(config);
  }
  const coord = PerCoreCheckpointCoordinator.create(m, CheckpointStore.open({ checkpointDir: ckpt, maxRetained: 2, fullEvery: 3 }));
  let nextId = (coord.store().latestCheckpoint()?.id ?? 0n) + 1n;
  say(`ready ${m.epoch()}`);
  for (;;) {
    const puts: bigint[][] = Array.from({ length: cores }, () => []);
    for (let i = rng.range(1, 60); i > 0; i--) {
      const c = rng.int(cores);
      const w = m.writer(c);
      const seq = w.sequence();
      w.appendPut(killKey(c, seq), killValue(seq));
      puts[c]!.push(seq);
    }
    if (rng.bool(0.1)) coord.createCheckpoint(nextId++);
    else m.syncAll();
    say(`ack ${puts.map((p, c) => `${c}:${p.join(',')}`).join(' ')}`);
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
