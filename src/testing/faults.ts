import type { WalFs } from '../io/fs.js';
import type { FsFaultCode } from './system-error.js';

/** A `WalFs` method name. */
export type FsOp = keyof WalFs;

/** One call as the fault injector sees it, before it runs. */
export interface FsCall {
  op: FsOp;
  /** The file or directory concerned (for fd calls, the path the fd was opened with). */
  path: string | undefined;
  /** 1-based index of this call among all calls the layer has seen. */
  index: number;
  /** Bytes a write would transfer. */
  length?: number;
  /** File offset of a read or write. */
  position?: number;
}

/**
 * Which calls fail and how. A rule matches calls by method, path and predicate; among
 * matching calls it skips `nth - 1`, then fails `count` of them.
 */
export interface FsFaultRule {
  /** Method(s) the rule applies to; every method when absent. */
  op?: FsOp | readonly FsOp[];
  /** Only calls on this path (exact) or on paths the RegExp matches. */
  path?: string | RegExp;
  /** Only calls this predicate accepts. */
  when?: (call: FsCall) => boolean;
  /** Fail the nth matching call (1-based). Default 1: the first. */
  nth?: number;
  /** How many matching calls fail, from the nth on. Default 1; `Infinity` for all later ones. */
  count?: number;
  /** The error code. Default `EIO`. */
  code?: FsFaultCode;
  /**
   * Writes only: transfer a pseudo-random prefix of the bytes before failing, as a device
   * that fails mid-request can. Default false: nothing is written.
   */
  partial?: boolean;
}

/** A rule once installed: how often it fired, and a way to remove it. */
export interface FsFaultHandle {
  readonly rule: FsFaultRule;
  /** Matching calls seen so far. */
  readonly matched: number;
  /** Calls this rule failed so far. */
  readonly fired: number;
  remove(): void;
}

class InstalledRule implements FsFaultHandle {
  matched = 0;
  fired = 0;
  removed = false;
  constructor(readonly rule: FsFaultRule) {}
  remove(): void { this.removed = true; }

  /** True when `call` matches and falls in the rule's window. */
  take(call: FsCall): boolean {
    const r = this.rule;
    if (this.removed) return false;
    if (r.op !== undefined && (typeof r.op === 'string' ? r.op !== call.op : !r.op.includes(call.op))) return false;
    if (r.path !== undefined) {
      if (call.path === undefined) return false;
      if (typeof r.path === 'string' ? r.path !== call.path : !r.path.test(call.path)) return false;
    }
    if (r.when !== undefined && !r.when(call)) return false;
    this.matched++;
    const first = r.nth ?? 1;
    const count = r.count ?? 1;
    if (this.matched >= first && this.matched < first + count) {
      this.fired++;
      return true;
    }
    return false;
  }
}

/**
 * The rule engine shared by {@link SimDisk} and {@link FaultyFs}: each call is checked
 * against the installed rules, in installation order, before it runs. Use it to give a
 * file layer of your own the same fault rules.
 *
 * @example
 * ```ts
 * const faults = new FsFaultInjector();
 * faults.inject({ op: 'fdatasyncSync', nth: 2, code: 'EIO' });
 * faults.check('fdatasyncSync', '/wal/wal-0.log'); // null: the first passes
 * faults.check('fdatasyncSync', '/wal/wal-0.log'); // the rule: fail this one with EIO
 * ```
 */
export class FsFaultInjector {
  private rules: InstalledRule[] = [];
  private calls = 0;
  private readonly perOp = new Map<FsOp, number>();

  /** Installs a rule; returns its handle. */
  inject(rule: FsFaultRule): FsFaultHandle {
    const r = new InstalledRule(rule);
    this.rules.push(r);
    return r;
  }

  /** Removes every rule (counts are kept). */
  clear(): void {
    for (const r of this.rules) r.removed = true;
    this.rules = [];
  }

  /** Calls seen so far, of one method or of all. */
  callCount(op?: FsOp): number {
    return op === undefined ? this.calls : this.perOp.get(op) ?? 0;
  }

  /** Counts the call and returns the rule that fails it, or null. */
  check(op: FsOp, path: string | undefined, extra: { length?: number; position?: number } = {}): FsFaultRule | null {
    this.calls++;
    this.perOp.set(op, (this.perOp.get(op) ?? 0) + 1);
    if (this.rules.length === 0) return null;
    const call: FsCall = { op, path, index: this.calls, ...extra };
    let hit: FsFaultRule | null = null;
    for (const r of this.rules) if (r.take(call) && hit === null) hit = r.rule;
    return hit;
  }
}
