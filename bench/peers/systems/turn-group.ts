/**
 * The minimal event-loop group commit the bench uses where no library one exists: callers
 * append their record themselves, then `enqueue()`; one `setImmediate` per group runs
 * `commit` (write + fdatasync of everything appended so far) once for all of them and then
 * settles their promises. `commit` is synchronous, so the event loop is blocked while it
 * runs — the report says so wherever this is used.
 */
export class TurnGroupCommit {
  private resolves: (() => void)[] = [];
  private rejects: ((e: unknown) => void)[] = [];
  private scheduled = false;
  private readonly commit: () => void;

  constructor(commit: () => void) {
    this.commit = commit;
  }

  enqueue(): Promise<void> {
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flush);
    }
    return new Promise<void>((resolve, reject) => {
      this.resolves.push(resolve);
      this.rejects.push(reject);
    });
  }

  private readonly flush = (): void => {
    this.scheduled = false;
    const resolves = this.resolves;
    const rejects = this.rejects;
    this.resolves = [];
    this.rejects = [];
    try {
      this.commit();
    } catch (e) {
      for (const r of rejects) r(e);
      return;
    }
    for (const r of resolves) r();
  };
}
