import { malformed, rate, readProc } from './proc-file';

/** Network throughput from /proc/net/dev: bytes per second summed over every interface but loopback. */
export class NetworkCollector {
  private previous: { rx: number; tx: number; atMs: number } | undefined;

  constructor(private readonly procRoot = '/proc') {}

  async sample(nowMs: number): Promise<{ rxBps: number; txBps: number }> {
    const path = `${this.procRoot}/net/dev`;
    const lines = (await readProc(this.procRoot, 'net/dev')).split('\n').slice(2);
    let rx = 0;
    let tx = 0;
    for (const line of lines) {
      if (line.trim() === '') continue;
      const colon = line.indexOf(':');
      if (colon < 0) throw malformed(path, `no "iface:" in ${JSON.stringify(line)}`);
      if (line.slice(0, colon).trim() === 'lo') continue;
      const fields = line
        .slice(colon + 1)
        .trim()
        .split(/\s+/)
        .map(Number);
      if (fields.length < 16 || fields.some((f) => !Number.isFinite(f)))
        throw malformed(path, `bad counters in ${JSON.stringify(line)}`);
      rx += fields[0] ?? 0;
      tx += fields[8] ?? 0;
    }
    const before = this.previous;
    this.previous = { rx, tx, atMs: nowMs };
    const elapsed = before === undefined ? 0 : nowMs - before.atMs;
    return { rxBps: rate(before?.rx, rx, elapsed), txBps: rate(before?.tx, tx, elapsed) };
  }
}
