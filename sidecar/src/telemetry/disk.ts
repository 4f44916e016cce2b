import { malformed, rate, readProc } from './proc-file';

const SECTOR_BYTES = 512;
/** Partitions and pseudo-devices, whose I/O is already counted in (or absent from) a whole disk's. */
const SKIP = [
  /^loop\d+$/,
  /^ram\d+$/,
  /^zram\d+$/,
  /^(sd|vd|xvd|hd)[a-z]+\d+$/,
  /^nvme\d+n\d+p\d+$/,
  /^mmcblk\d+p\d+$/,
  /^dm-\d+$/,
  /^md\d+$/,
  /^sr\d+$/,
];

/** Disk throughput from /proc/diskstats: bytes per second read and written, summed over whole disks. */
export class DiskCollector {
  private previous: { read: number; written: number; atMs: number } | undefined;

  constructor(private readonly procRoot = '/proc') {}

  async sample(nowMs: number): Promise<{ readBps: number; writeBps: number }> {
    const path = `${this.procRoot}/diskstats`;
    let read = 0;
    let written = 0;
    for (const line of (await readProc(this.procRoot, 'diskstats')).split('\n')) {
      if (line.trim() === '') continue;
      const fields = line.trim().split(/\s+/);
      const name = fields[2];
      // major minor name reads merged sectors_read ms writes merged sectors_written …
      if (name === undefined || fields.length < 14) throw malformed(path, `short line ${JSON.stringify(line)}`);
      if (SKIP.some((re) => re.test(name))) continue;
      const sectorsRead = Number(fields[5]);
      const sectorsWritten = Number(fields[9]);
      if (!Number.isFinite(sectorsRead) || !Number.isFinite(sectorsWritten))
        throw malformed(path, `bad counters for ${name}`);
      read += sectorsRead * SECTOR_BYTES;
      written += sectorsWritten * SECTOR_BYTES;
    }
    const before = this.previous;
    this.previous = { read, written, atMs: nowMs };
    const elapsed = before === undefined ? 0 : nowMs - before.atMs;
    return { readBps: rate(before?.read, read, elapsed), writeBps: rate(before?.written, written, elapsed) };
  }
}
