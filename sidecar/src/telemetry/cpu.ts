import { malformed, readProc } from './proc-file';

/** CPU utilisation from /proc/stat's aggregate line: busy jiffies over all jiffies since the last sample. */
export class CpuCollector {
  private previous: { busy: number; total: number } | undefined;

  constructor(private readonly procRoot = '/proc') {}

  /** Busy fraction 0..1 since the previous call; 0 on the first. */
  async sample(): Promise<number> {
    const text = await readProc(this.procRoot, 'stat');
    const line = text.split('\n').find((l) => l.startsWith('cpu '));
    if (line === undefined) throw malformed(`${this.procRoot}/stat`, 'no aggregate "cpu" line');
    const fields = line.trim().split(/\s+/).slice(1).map(Number);
    if (fields.length < 4 || fields.some((f) => !Number.isFinite(f)))
      throw malformed(`${this.procRoot}/stat`, 'bad cpu line');
    // user nice system idle iowait irq softirq steal (guest time is already inside user and nice).
    const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = fields;
    const total = user + nice + system + idle + iowait + irq + softirq + steal;
    const busy = total - idle - iowait;
    const before = this.previous;
    this.previous = { busy, total };
    if (before === undefined || total <= before.total) return 0;
    return Math.min(1, Math.max(0, (busy - before.busy) / (total - before.total)));
  }
}
