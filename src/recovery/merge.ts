import { compareHeads, type SegmentCursor } from './cursor.js';

/**
 * Streams `cursors` in global order ({@link PerCoreWalEntry.compare}): `visit` sees each
 * cursor while its head is the next entry. One entry per segment is held, in a binary
 * heap (SPEC invariant 8). `tick` is called every `tickEvery` entries (progress).
 */
export function mergeCursors(cursors: readonly SegmentCursor[], visit: (c: SegmentCursor) => void, tick?: () => void, tickEvery = 4096): number {
  const heap: SegmentCursor[] = [];
  for (const c of cursors) if (c.advance()) heap.push(c);
  for (let i = (heap.length >> 1) - 1; i >= 0; i--) siftDown(heap, i);
  let n = 0;
  let untilTick = tickEvery;
  while (heap.length > 0) {
    const top = heap[0]!;
    visit(top);
    n++;
    if (!top.advance()) {
      const last = heap.pop()!;
      if (heap.length === 0) break;
      heap[0] = last;
    }
    if (heap.length > 1) siftDown(heap, 0);
    if (--untilTick === 0 && tick !== undefined) { untilTick = tickEvery; tick(); }
  }
  return n;
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
