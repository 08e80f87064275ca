import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads';
import { PerCoreWalError } from '../errors/errors.js';
import type { EpochRef } from '../manager/epoch.js';
import { CMD, CTRL_WORDS, fromWire, WAKE, type CoreWorkerData, type PoolCommand, type WorkerReport } from './protocol.js';

const workerUrl = new URL('./core-worker.js', import.meta.url);

/** The writer settings a core worker opens its segment with. */
export interface CoreWriterSettings {
  bufferSize: number | undefined;
  preallocate: number | undefined;
  maxRecordSize: number;
}

/**
 * The pool's side of one core's worker thread: its command port, its control words, and
 * the reports it waits for. Commands go by `postMessage` (the worker polls its port when
 * CMD moves); data never does.
 */
export interface CoreSlot {
  core: number;
  worker: Worker;
  port: MessagePort;
  ctrl: Int32Array;
  failed: PerCoreWalError | null;
  exited: boolean;
  exit: Promise<number>;
  /** Waiters for the next report of a type. */
  waiting: Map<string, { resolve: (r: WorkerReport) => void; reject: (e: unknown) => void }>;
}

/** Starts the worker of `core`; it scans its segment at once and reports `scanned`. */
export function spawnCore(core: number, path: string, ring: SharedArrayBuffer, epoch: EpochRef, o: CoreWriterSettings): CoreSlot {
  const { port1, port2 } = new MessageChannel();
  const wd: CoreWorkerData = {
    coreId: core, path, ring, epoch: epoch.shared, port: port2,
    bufferSize: o.bufferSize, preallocate: o.preallocate, maxRecordSize: o.maxRecordSize,
  };
  const worker = new Worker(workerUrl, { workerData: wd, transferList: [port2] });
  const exit = new Promise<number>((resolve) => worker.once('exit', resolve));
  // An uncaught exception also ends in 'exit'; the listener keeps it from being rethrown here.
  worker.on('error', () => {});
  const slot: CoreSlot = {
    core, worker, port: port1, ctrl: new Int32Array(ring, 0, CTRL_WORDS), failed: null, exited: false, exit,
    waiting: new Map(),
  };
  void exit.then(() => { slot.exited = true; });
  port1.on('message', (m: WorkerReport) => {
    const w = slot.waiting.get(m.type);
    if (w !== undefined) { slot.waiting.delete(m.type); w.resolve(m); }
    if (m.type === 'failed') {
      const err = fromWire(m.error);
      for (const x of slot.waiting.values()) x.reject(err);
      slot.waiting.clear();
    }
  });
  void exit.then((code) => {
    drainReports(slot);
    const err = slot.failed ?? new PerCoreWalError('WORKER_FAILED', `the worker of core ${core} exited (code ${code})`, { coreId: core, path });
    for (const x of slot.waiting.values()) x.reject(err);
    slot.waiting.clear();
  });
  return slot;
}

/** Delivers reports still queued on the port (the 'exit' event can overtake them). */
export function drainReports(s: CoreSlot): void {
  for (let m = receiveMessageOnPort(s.port); m !== undefined; m = receiveMessageOnPort(s.port)) s.port.emit('message', m.message);
}

/** The next report of `type` from the worker; rejects if it fails or exits first. */
export function expectReport(s: CoreSlot, type: WorkerReport['type']): Promise<WorkerReport> {
  if (s.exited) {
    return Promise.reject(s.failed ?? new PerCoreWalError('WORKER_FAILED', `the worker of core ${s.core} has exited`, { coreId: s.core }));
  }
  return new Promise((resolve, reject) => s.waiting.set(type, { resolve, reject }));
}

/** Posts a command and wakes the worker, wherever it sleeps. */
export function sendCommand(s: CoreSlot, cmd: PoolCommand): void {
  s.port.postMessage(cmd);
  // The worker reads CMD before each batch and sleeps only on WAKE (idle).
  Atomics.add(s.ctrl, CMD, 1);
  Atomics.add(s.ctrl, WAKE, 1);
  Atomics.notify(s.ctrl, WAKE);
}
