import { compareHeads, type SegmentCursor } from './cursor.js';

/**
 * Streams `cursors` in global order ({@link PerCoreWalEntry.compare}): `visit` sees each
 * cursor while its head is the next entry. One entry per segment is held, in a binary
 * heap (SPEC invariant 8). `tick` is called every `tickEvery` entries (progress).
 */
export function mergeCursors(cursors: readonly SegmentCursor[], visit: (c: SegmentCursor) => void, tick?: () => void, tickEvery = 4096): number {
  const merge = new CursorMerge(cursors);
  if (tick === undefined) merge.step(visit, Infinity);
  else while (merge.step(visit, tickEvery)) tick();
  return merge.count;
}

function siftDown(heap: SegmentCursor[], k: number): void {
  const n = heap.length;
  const x = heap[k]!;
  for (;;) {
    let c = 2 * k + 1;
    if (c >= n) break;
    if (c + 1 < n && compareHeads(heap[c + 1]!, heap[c]!) < 0) c++;
    if (compareHeads(heap[c]!, x) >= 0) break;
    heap[k] = heap[c]!;
    k = c;
  }
  heap[k] = x;
}

/**
 * {@link mergeCursors} in steps: the same global order, but the caller decides when to
 * stop and go on, so a long merge can give the event loop a turn between steps (the
 * pool's checkpoint merges on the thread its producers run on).
 */
export class CursorMerge {
  private readonly heap: SegmentCursor[] = [];
  /** Entries visited so far. */
  count = 0;

  constructor(cursors: readonly SegmentCursor[]) {
    const heap = this.heap;
    for (const c of cursors) if (c.advance()) heap.push(c);
    for (let i = (heap.length >> 1) - 1; i >= 0; i--) siftDown(heap, i);
  }

  /** Visits up to `max` entries; false once every cursor is exhausted. */
  step(visit: (c: SegmentCursor) => void, max: number): boolean {
    const heap = this.heap;
    let n = 0;
    while (n < max && heap.length > 0) {
      const top = heap[0]!;
      visit(top);
      n++;
      if (!top.advance()) {
        const last = heap.pop()!;
        if (heap.length === 0) break;
        heap[0] = last;
      }
      if (heap.length > 1) siftDown(heap, 0);
    }
    this.count += n;
    return heap.length > 0;
  }
}
