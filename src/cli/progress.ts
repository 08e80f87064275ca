import cliProgress from 'cli-progress';
import { formatBytes } from './format.js';

/** Options every long-running command takes. */
export interface ProgressFlags {
  json?: boolean;
  /** commander sets false for --no-progress. */
  progress?: boolean;
}

/**
 * A bar is for a person watching: never in JSON output, never when stdout is piped or
 * redirected (a log file full of redraws helps nobody), and it draws on stderr so that
 * stdout stays exactly the command's output.
 */
export function progressWanted(flags: ProgressFlags): boolean {
  return flags.json !== true && flags.progress !== false && process.stdout.isTTY === true && process.stderr.isTTY === true;
}

export interface ByteProgress {
  /** Bytes done so far, out of the total; `detail` (e.g. " | 1,200 acked") is shown after the ETA. */
  update(done: number, detail?: string): void;
  /** Changes the total, for work whose size is known only once it has started (recovery's phases). */
  setTotal(total: number): void;
  /**
   * Runs `write`, which prints to the terminal the bar is on, with the bar out of the way:
   * the bar is removed first and drawn again below what was written.
   */
  interrupt(write: () => void): void;
  /** Removes the bar; idempotent. */
  stop(): void;
}

/** What a recovery bar says in each of recovery's progress phases. */
export const RECOVERY_PHASES = {
  checkpoint: 'loading the newest valid checkpoint',
  scan: 'finding where each segment ends',
  replay: 'replaying the WAL',
} as const;

const NONE: ByteProgress = { update() {}, setTotal() {}, interrupt(write) { write(); }, stop() {} };

/** A bytes-scanned bar (or, with `unit`, a count of things done), or a no-op when `enabled` is false. */
export function byteProgress(label: string, total: number, enabled: boolean, unit: 'bytes' | string = 'bytes'): ByteProgress {
  if (!enabled) return NONE;
  const bytes = unit === 'bytes';
  const make = (): cliProgress.SingleBar => new cliProgress.SingleBar({
    format: `${label} {bar} {percentage}% | {value} of {total}${bytes ? '' : ` ${unit}`} | {eta_formatted}{detail}`,
    stream: process.stderr,
    hideCursor: true,
    // stop() always returns the cursor to where start() left it. Clearing that line is
    // right only while nothing else was printed since start(): hence interrupt() below
    // stops the bar before any output and starts a new one after it.
    clearOnComplete: true,
    // Its timer cannot fire while a synchronous scan holds the event loop; what keeps the
    // bar moving is synchronousUpdate (the default): update() redraws every 200 ms or so.
    // No estimate yet (no progress, or the total is not known) is "…", not "NaN"/"INF".
    formatTime: (t, options, roundTo) => (Number.isFinite(t) && total > 0 ? cliProgress.Format.TimeFormat(t, options, roundTo) : '…'),
    // A total of 0 is not known yet (setTotal will tell): shown as "?" rather than as 1.
    formatValue: (v, options, type) =>
      type === 'total' && total === 0 ? '?'
        : bytes && (type === 'value' || type === 'total') ? formatBytes(v) : cliProgress.Format.ValueFormat(v, options, type),
  }, cliProgress.Presets.shades_classic);
  let max = Math.max(total, 1);
  let bar = make();
  let value = 0;
  let detail = '';
  bar.start(max, 0, { detail });
  let stopped = false;
  return {
    update(done, more) {
      if (stopped) return;
      value = Math.min(done, total);
      const changed = more !== undefined && more !== detail;
      if (more !== undefined) detail = more;
      bar.update(value, { detail });
      // A new phase is drawn at once: the synchronous work that follows (loading a
      // checkpoint) would otherwise leave the previous one on screen until it ends.
      if (changed) bar.render();
    },
    setTotal(t) {
      if (stopped) return;
      total = t;
      max = Math.max(t, 1);
      bar.setTotal(max);
    },
    interrupt(write) {
      if (stopped) return write();
      bar.stop();
      try {
        write();
      } finally {
        bar = make();
        bar.start(max, value, { detail });
      }
    },
    stop() {
      if (stopped) return;
      stopped = true;
      bar.update(total);
      bar.stop();
    },
  };
}
