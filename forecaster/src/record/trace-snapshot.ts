import { createReadStream, createWriteStream } from 'node:fs';
import { access } from 'node:fs/promises';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { finished } from 'node:stream/promises';
import { HISTORY_KINDS } from '../windows/node-window';

/** What a snapshot holds: enough to decide whether a retrain has anything to learn from. */
export interface TraceStats {
  readonly events: number;
  readonly samples: number;
  readonly preemptions: number;
  readonly nodes: number;
  /** Earliest and latest line time (Unix ms); 0 when empty. */
  readonly firstMs: number;
  readonly lastMs: number;
  /** Lines left out because they do not parse (a line torn by a crash mid-write). */
  readonly skipped: number;
}

/**
 * Copies the recorded files (oldest first; missing ones are skipped) into one nc-trace/1 file for the trainer,
 * leaving out lines that do not parse, and counts what it copied. The recorder keeps writing meanwhile; lines
 * it appends after a file was read are simply in the next snapshot.
 */
export async function snapshotTrace(sources: readonly string[], dest: string): Promise<TraceStats> {
  const out = createWriteStream(dest);
  const nodes = new Set<string>();
  let events = 0;
  let samples = 0;
  let preemptions = 0;
  let skipped = 0;
  let firstMs = Infinity;
  let lastMs = -Infinity;
  try {
    for (const source of sources) {
      if (
        !(await access(source).then(
          () => true,
          () => false,
        ))
      )
        continue;
      const lines = createInterface({ input: createReadStream(source, 'utf8'), crlfDelay: Infinity });
      for await (const line of lines) {
        if (line.trim() === '') continue;
        const record = parseLine(line);
        if (record === undefined) {
          skipped += 1;
          continue;
        }
        if (record === 'header') continue;
        nodes.add(record.node);
        if (record.kind === 'preempted') preemptions += 1;
        if (record.kind === 'sample') samples += 1;
        else events += 1;
        firstMs = Math.min(firstMs, record.t);
        lastMs = Math.max(lastMs, record.t);
        if (!out.write(`${line}\n`)) await once(out, 'drain');
      }
    }
  } finally {
    out.end();
    await finished(out);
  }
  const empty = events + samples === 0;
  return {
    events,
    samples,
    preemptions,
    nodes: nodes.size,
    firstMs: empty ? 0 : firstMs,
    lastMs: empty ? 0 : lastMs,
    skipped,
  };
}

type Line = 'header' | { kind: string; t: number; node: string };

/** The fields the trainer insists on (integer t, a node name, an event or metrics); anything else is torn. */
function parseLine(line: string): Line | undefined {
  let record: unknown;
  try {
    record = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (typeof record !== 'object' || record === null || Array.isArray(record)) return undefined;
  const r = record as Record<string, unknown>;
  if (typeof r.format === 'string' && r.node === undefined) return 'header';
  if (!Number.isSafeInteger(r.t) || typeof r.node !== 'string' || r.node === '') return undefined;
  if (typeof r.event === 'string') {
    if (!(HISTORY_KINDS as readonly string[]).includes(r.event)) return undefined;
    return { kind: r.event, t: r.t as number, node: r.node };
  }
  if (typeof r.metrics === 'object' && r.metrics !== null) return { kind: 'sample', t: r.t as number, node: r.node };
  return undefined;
}
