/** 6.7k, 1.25M, 812: three significant figures, the way the tables quote rates. */
export function rate(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  if (a >= 1e6) return `${sig(v / 1e6)}M`;
  if (a >= 1e3) return `${sig(v / 1e3)}k`;
  return sig(v);
}

export function sig(v: number): string {
  const a = Math.abs(v);
  if (a >= 100) return v.toFixed(0);
  if (a >= 10) return v.toFixed(1);
  if (a >= 1) return v.toFixed(2);
  return v.toPrecision(2);
}

export function ms(v: number | null): string {
  return v === null ? '–' : `${sig(v)} ms`;
}

export function ratio(v: number | null): string {
  return v === null ? '–' : `${sig(v)}x`;
}
