import { readFileSync } from 'node:fs';
import { ReplayError } from '../controller/errors';

/** The trace events a replay acts on (nc-trace/1 names). */
export type ReplayEventKind = 'join' | 'notice' | 'preempted';

export interface ReplayEvent {
  /** Trace time, ms. */
  readonly t: number;
  readonly node: string;
  readonly kind: ReplayEventKind;
}

export interface TraceSchedule {
  readonly events: readonly ReplayEvent[];
  readonly startMs: number;
  readonly endMs: number;
}

const KINDS = new Set<string>(['join', 'notice', 'preempted']);
// At one millisecond, pre-emptions go first so the nodes joining at that instant find their slots free.
const ORDER: Record<ReplayEventKind, number> = { preempted: 0, join: 1, notice: 2 };

/**
 * Reads an nc-trace/1 file (forecaster/training/README.md) into the replay's schedule: joins, notices and
 * pre-emptions in time order. Telemetry samples and other events are not replayed.
 */
export function parseTrace(text: string, source = 'trace'): TraceSchedule {
  const events: ReplayEvent[] = [];
  let startMs = Infinity;
  let endMs = -Infinity;
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '') return;
    let row: { t?: unknown; node?: unknown; event?: unknown; format?: unknown };
    try {
      row = JSON.parse(line) as typeof row;
    } catch (cause) {
      throw new ReplayError('NC_REPLAY_TRACE_INVALID', `${source} line ${i + 1}: not JSON`, { cause });
    }
    if (row.format !== undefined) return;
    if (typeof row.t !== 'number' || !Number.isFinite(row.t) || typeof row.node !== 'string' || row.node === '') {
      throw new ReplayError('NC_REPLAY_TRACE_INVALID', `${source} line ${i + 1}: needs numeric "t" and "node"`, {
        context: { line: i + 1 },
      });
    }
    startMs = Math.min(startMs, row.t);
    endMs = Math.max(endMs, row.t);
    if (typeof row.event === 'string' && KINDS.has(row.event))
      events.push({ t: row.t, node: row.node, kind: row.event as ReplayEventKind });
  });
  if (events.length === 0)
    throw new ReplayError('NC_REPLAY_TRACE_INVALID', `${source}: no join, notice or preempted events`);
  events.sort((a, b) => a.t - b.t || ORDER[a.kind] - ORDER[b.kind]);
  return { events, startMs, endMs };
}

export function readTrace(path: string): TraceSchedule {
  return parseTrace(readFileSync(path, 'utf8'), path);
}

/** The instant that splits a trace's time span into the first `fraction` (training) and the rest (held out). */
export function splitTime(schedule: Pick<TraceSchedule, 'startMs' | 'endMs'>, fraction = 0.6): number {
  return Math.round(schedule.startMs + (schedule.endMs - schedule.startMs) * fraction);
}

/** The nc-trace/1 lines before `beforeMs` (header lines kept): what the model may be trained on. */
export function traceBefore(text: string, beforeMs: number): string {
  return text
    .split('\n')
    .filter((line) => {
      if (line.trim() === '') return false;
      const row = JSON.parse(line) as { t?: unknown };
      return typeof row.t !== 'number' || row.t < beforeMs;
    })
    .map((line) => `${line}\n`)
    .join('');
}

export interface SlowSpanOptions {
  /** Only pre-emptions at or after this trace time get a span (the held-out part, the one that is counted). */
  readonly fromMs: number;
  /** How long before each pre-emption the span starts: the forecaster's horizon, when an early drain counts. */
  readonly leadMs: number;
  /** How long after each pre-emption it lasts: the cold starts of what it caught. */
  readonly tailMs: number;
  /** Trace ms per real ms inside the spans. */
  readonly scale: number;
}

/**
 * The stretches of trace time to play slowly: around every counted pre-emption, merged where they overlap. A
 * migration takes real seconds whatever the speed, so at a compression that makes a long trace short a
 * two-minute notice would last a fraction of a second; played slowly there, a drain decided in time has the
 * real time to finish, and the quiet hours between pre-emptions still go by fast.
 */
export function slowSpans(
  schedule: TraceSchedule,
  options: SlowSpanOptions,
): { fromMs: number; toMs: number; scale: number }[] {
  const spans: { fromMs: number; toMs: number; scale: number }[] = [];
  for (const e of schedule.events) {
    if (e.kind !== 'preempted' || e.t < options.fromMs) continue;
    const fromMs = Math.max(options.fromMs, e.t - options.leadMs);
    const toMs = e.t + options.tailMs;
    const last = spans[spans.length - 1];
    if (last !== undefined && fromMs <= last.toMs) last.toMs = Math.max(last.toMs, toMs);
    else spans.push({ fromMs, toMs, scale: options.scale });
  }
  return spans;
}
