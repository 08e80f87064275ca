/**
 * A producer thread for the pool tests: appends `count` puts through a posted
 * `CoreWalProducerHandle`, `inFlight` at a time, and reports every acknowledged one.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { CoreWalProducer, type CoreWalProducerHandle } from '../../src/index.js';

const { handle, prefix, count, inFlight } = workerData as { handle: CoreWalProducerHandle; prefix: string; count: number; inFlight: number };
const wal = CoreWalProducer.fromHandle(handle);
const acked: { key: string; core: number; ticket: number }[] = [];
let next = 0;
async function lane(): Promise<void> {
  while (next < count) {
    const key = `${prefix}${next++}`;
    const ticket = await wal.put(key, `value of ${key}`);
    acked.push({ key, core: wal.coreOf(key), ticket });
  }
}
await Promise.all(Array.from({ length: inFlight }, lane));
parentPort!.postMessage({ acked });
