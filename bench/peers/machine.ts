import { readFileSync, realpathSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir, totalmem } from 'node:os';

export interface Machine {
  nproc: number;
  cpu: string;
  memGiB: number;
  node: string;
  platform: string;
  tmpdir: string;
  /** Filesystem type and device of the temp dir, from /proc/mounts. */
  filesystem: string;
}

export function machine(): Machine {
  const dir = tmpdir();
  return {
    nproc: availableParallelism(),
    cpu: cpuModel(),
    memGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    platform: `${process.platform} ${process.arch}`,
    tmpdir: dir,
    filesystem: filesystemOf(dir),
  };
}

function cpuModel(): string {
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (m) return m[1]!.trim();
  } catch { /* not Linux */ }
  return cpus()[0]?.model ?? 'unknown';
}

function filesystemOf(path: string): string {
  try {
    const real = realpathSync(path);
    let best: { mount: string; type: string; dev: string } | null = null;
    for (const line of readFileSync('/proc/mounts', 'utf8').split('\n')) {
      const [dev, mount, type] = line.split(' ');
      if (!dev || !mount || !type) continue;
      const inside = real === mount || real.startsWith(mount.endsWith('/') ? mount : mount + '/');
      if (inside && (best === null || mount.length >= best.mount.length)) best = { mount, type, dev };
    }
    if (best) return `${best.type} (${best.dev} on ${best.mount})`;
  } catch { /* not Linux */ }
  return 'unknown';
}

export function machineLine(m: Machine): string {
  return `${m.nproc} x ${m.cpu}, ${m.memGiB} GiB, Node ${m.node}, ${m.platform}, temp dir ${m.tmpdir} on ${m.filesystem}`;
}
