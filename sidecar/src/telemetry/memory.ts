import { MemorySource } from '../../../proto/gen/chain/v1/telemetry';
import type { MemoryPressure } from '../../../proto/gen/chain/v1/telemetry';
import { TelemetryError } from './errors';
import { malformed, readProc } from './proc-file';

/**
 * Memory pressure: PSI from /proc/pressure/memory where the kernel has it (stall percentages), always the
 * used fraction from /proc/meminfo (1 - MemAvailable / MemTotal), which is all an older kernel offers.
 */
export class MemoryCollector {
  private psi: boolean | undefined;

  constructor(private readonly procRoot = '/proc') {}

  async sample(): Promise<MemoryPressure> {
    const usedFraction = await this.usedFraction();
    if (this.psi !== false) {
      try {
        const { some, full } = parsePsi(
          await readProc(this.procRoot, 'pressure/memory'),
          `${this.procRoot}/pressure/memory`,
        );
        this.psi = true;
        return { source: MemorySource.MEMORY_SOURCE_PSI, someAvg10: some, fullAvg10: full, usedFraction };
      } catch (err) {
        // No PSI on this kernel (or disabled): remembered, so the file is not tried on every sample.
        if (!(err instanceof TelemetryError) || err.code !== 'NC_TELEMETRY_PROC_UNREADABLE' || this.psi === true)
          throw err;
        this.psi = false;
      }
    }
    return { source: MemorySource.MEMORY_SOURCE_MEMINFO, someAvg10: 0, fullAvg10: 0, usedFraction };
  }

  private async usedFraction(): Promise<number> {
    const path = `${this.procRoot}/meminfo`;
    const text = await readProc(this.procRoot, 'meminfo');
    const kib = (key: string): number | undefined => {
      const m = new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(text);
      return m?.[1] === undefined ? undefined : Number(m[1]);
    };
    const total = kib('MemTotal');
    if (total === undefined || total === 0) throw malformed(path, 'no MemTotal');
    // MemAvailable appeared in Linux 3.14; before it, free + buffers + cached is the usual estimate.
    const available = kib('MemAvailable') ?? (kib('MemFree') ?? 0) + (kib('Buffers') ?? 0) + (kib('Cached') ?? 0);
    return Math.min(1, Math.max(0, 1 - available / total));
  }
}

function parsePsi(text: string, path: string): { some: number; full: number } {
  const avg10 = (kind: string): number | undefined => {
    const m = new RegExp(`^${kind}\\s.*\\bavg10=([\\d.]+)`, 'm').exec(text);
    return m?.[1] === undefined ? undefined : Number(m[1]);
  };
  const some = avg10('some');
  if (some === undefined) throw malformed(path, 'no "some avg10=" line');
  return { some, full: avg10('full') ?? 0 };
}
