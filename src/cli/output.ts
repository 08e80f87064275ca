import { createInterface } from 'node:readline/promises';

/**
 * Collects stdout lines and writes them in large chunks: a dump of millions of entries
 * would otherwise spend its time in one write per line.
 */
export class LineWriter {
  private chunks: string[] = [];
  private size = 0;

  /** Each chunk is written inside `around` (e.g. a progress bar's interrupt). */
  constructor(private readonly around: (write: () => void) => void = (write) => write()) {}

  line(s: string): void {
    this.chunks.push(s, '\n');
    this.size += s.length + 1;
    if (this.size >= 1 << 16) this.flush();
  }

  json(value: unknown): void {
    this.line(JSON.stringify(value));
  }

  flush(): void {
    if (this.size === 0) return;
    const text = this.chunks.join('');
    this.chunks = [];
    this.size = 0;
    this.around(() => process.stdout.write(text));
  }
}

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + '\n');
}

export function printLine(s = ''): void {
  process.stdout.write(s + '\n');
}

export function warn(s: string): void {
  process.stderr.write(s + '\n');
}

/** Asks a yes/no question on the terminal (stderr, so stdout stays the command's output). */
export async function confirm(question: string): Promise<boolean> {
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const answer = await rl.question(`${question} [y/N] `);
    return /^y(es)?$/i.test(answer.trim());
  } finally {
    rl.close();
  }
}
