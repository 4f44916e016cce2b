import { readdir, readFile } from 'node:fs/promises';

/** A `runc checkpoint` still running for a container: its process group (runc and its CRIU) and its kind. */
export interface LiveDump {
  readonly processGroup: number;
  /** A post-copy dump: its CRIU serves the task's pages to a restored copy elsewhere. */
  readonly lazy: boolean;
}

/**
 * Finds a `runc checkpoint` of `containerId` that outlived the sidecar that started it (a lazy dump runs in its
 * own process group, detached), by the command lines in /proc.
 */
export async function liveDumpOf(containerId: string): Promise<LiveDump | undefined> {
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let argv: string[];
    let stat: string;
    try {
      argv = (await readFile(`/proc/${entry}/cmdline`, 'utf8')).split('\0');
      stat = await readFile(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue;
    }
    if (!argv.includes('checkpoint') || argv[argv.length - 2] !== containerId) continue;
    // Field 5 of stat is the process group; the command name before it may hold spaces, in parentheses.
    const processGroup = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]);
    if (!Number.isInteger(processGroup) || processGroup <= 0) continue;
    return { processGroup, lazy: argv.includes('--lazy-pages') };
  }
  return undefined;
}
