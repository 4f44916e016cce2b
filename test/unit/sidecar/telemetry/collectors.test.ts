import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemorySource } from '../../../../proto/gen/chain/v1/telemetry';
import { CpuCollector } from '../../../../sidecar/src/telemetry/cpu';
import { DiskCollector } from '../../../../sidecar/src/telemetry/disk';
import { MemoryCollector } from '../../../../sidecar/src/telemetry/memory';
import { NetworkCollector } from '../../../../sidecar/src/telemetry/network';

let proc: string;
const put = (relative: string, text: string): void => {
  mkdirSync(join(proc, relative, '..'), { recursive: true });
  writeFileSync(join(proc, relative), text);
};

beforeEach(() => {
  proc = mkdtempSync(join(tmpdir(), 'nc-c2-proc-'));
});
afterEach(() => rmSync(proc, { recursive: true, force: true }));

describe('CpuCollector (/proc/stat)', () => {
  it('reports busy jiffies over all jiffies between samples, idle and iowait counting as not busy', async () => {
    const cpu = new CpuCollector(proc);
    put('stat', 'cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\nintr 1\n');
    expect(await cpu.sample()).toBe(0);
    // +300 user, +100 system, +500 idle, +100 iowait: busy 400 of 1000.
    put('stat', 'cpu  400 0 200 1200 200 0 0 0 0 0\n');
    expect(await cpu.sample()).toBeCloseTo(0.4, 10);
  });

  it('names the file when it is missing or malformed', async () => {
    await expect(new CpuCollector(proc).sample()).rejects.toMatchObject({ code: 'NC_TELEMETRY_PROC_UNREADABLE' });
    put('stat', 'intr 1\n');
    await expect(new CpuCollector(proc).sample()).rejects.toMatchObject({ code: 'NC_TELEMETRY_PROC_MALFORMED' });
  });

  it('reads the real /proc/stat', async () => {
    const cpu = new CpuCollector();
    await cpu.sample();
    const u = await cpu.sample();
    expect(u).toBeGreaterThanOrEqual(0);
    expect(u).toBeLessThanOrEqual(1);
  });
});

describe('MemoryCollector (PSI, else meminfo)', () => {
  const meminfo = 'MemTotal:       1000000 kB\nMemFree:         100000 kB\nMemAvailable:    250000 kB\nBuffers: 1 kB\n';

  it('reads PSI some/full avg10 and the used fraction', async () => {
    put('meminfo', meminfo);
    put(
      'pressure/memory',
      'some avg10=12.50 avg60=3.00 avg300=1.00 total=123\nfull avg10=4.25 avg60=1.00 avg300=0.50 total=45\n',
    );
    expect(await new MemoryCollector(proc).sample()).toEqual({
      source: MemorySource.MEMORY_SOURCE_PSI,
      someAvg10: 12.5,
      fullAvg10: 4.25,
      usedFraction: 0.75,
    });
  });

  it('falls back to meminfo alone on a kernel without PSI, and to free+buffers+cached without MemAvailable', async () => {
    put('meminfo', meminfo);
    const m = new MemoryCollector(proc);
    expect(await m.sample()).toEqual({
      source: MemorySource.MEMORY_SOURCE_MEMINFO,
      someAvg10: 0,
      fullAvg10: 0,
      usedFraction: 0.75,
    });
    put('meminfo', 'MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 100 kB\nCached: 300 kB\n');
    expect((await m.sample()).usedFraction).toBeCloseTo(0.5, 10);
  });

  it('reads the real /proc', async () => {
    const sample = await new MemoryCollector().sample();
    expect(sample.usedFraction).toBeGreaterThan(0);
    expect([MemorySource.MEMORY_SOURCE_PSI, MemorySource.MEMORY_SOURCE_MEMINFO]).toContain(sample.source);
  });
});

describe('NetworkCollector (/proc/net/dev)', () => {
  const dev = (eth0Rx: number, eth0Tx: number): string =>
    'Inter-|   Receive |  Transmit\n face |bytes packets errs drop fifo frame compressed multicast|bytes packets errs drop fifo colls carrier compressed\n' +
    `    lo: 999999 1 0 0 0 0 0 0 999999 1 0 0 0 0 0 0\n  eth0: ${eth0Rx} 10 0 0 0 0 0 0 ${eth0Tx} 10 0 0 0 0 0 0\n  eth1: 1000 1 0 0 0 0 0 0 500 1 0 0 0 0 0 0\n`;

  it('sums bytes per second over every interface but loopback', async () => {
    const net = new NetworkCollector(proc);
    put('net/dev', dev(10_000, 20_000));
    expect(await net.sample(1_000)).toEqual({ rxBps: 0, txBps: 0 });
    put('net/dev', dev(30_000, 25_000));
    expect(await net.sample(3_000)).toEqual({ rxBps: 10_000, txBps: 2_500 });
  });

  it('reports 0 after a counter reset rather than a negative rate', async () => {
    const net = new NetworkCollector(proc);
    put('net/dev', dev(30_000, 25_000));
    await net.sample(0);
    put('net/dev', dev(10, 10));
    expect(await net.sample(1000)).toEqual({ rxBps: 0, txBps: 0 });
  });
});

describe('DiskCollector (/proc/diskstats)', () => {
  const stats = (sdaRead: number, sdaWritten: number): string =>
    [
      `   8       0 sda 100 0 ${sdaRead} 10 50 0 ${sdaWritten} 20 0 30 40 0 0 0 0`,
      `   8       1 sda1 100 0 ${sdaRead} 10 50 0 ${sdaWritten} 20 0 30 40 0 0 0 0`,
      '   7       0 loop0 5 0 800 1 0 0 0 0 0 1 1 0 0 0 0',
      ` 259       0 nvme0n1 1 0 ${sdaRead} 1 1 0 0 1 0 1 1 0 0 0 0`,
      ' 259       1 nvme0n1p1 1 0 4000 1 1 0 4000 1 0 1 1 0 0 0 0',
      ' 253       0 dm-0 1 0 4000 1 1 0 4000 1 0 1 1 0 0 0 0',
    ].join('\n') + '\n';

  it('sums whole disks only (partitions, loop and device-mapper excluded), 512-byte sectors per second', async () => {
    const disk = new DiskCollector(proc);
    put('diskstats', stats(1000, 2000));
    await disk.sample(0);
    put('diskstats', stats(3000, 6000));
    // sda +2000 sectors read, nvme0n1 +2000; sda +4000 written: over 2 s.
    expect(await disk.sample(2000)).toEqual({ readBps: (4000 * 512) / 2, writeBps: (4000 * 512) / 2 });
  });

  it('reads the real /proc/diskstats', async () => {
    const disk = new DiskCollector();
    await disk.sample(Date.now());
    const rates = await disk.sample(Date.now() + 1000);
    expect(rates.readBps).toBeGreaterThanOrEqual(0);
  });
});
