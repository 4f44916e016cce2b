import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { ForecastCliError } from '../../../../forecaster/src/cli/errors';
import type {
  ModelRetrainer,
  RetrainOutcome,
  RetrainRequest,
} from '../../../../forecaster/src/retrain/model-retrainer';
import { RetrainTimer } from '../../../../forecaster/src/retrain/retrain-timer';
import type { RetrainTimerConfig } from '../../../../forecaster/src/retrain/retrain-timer';
import { FakeClock } from '../../../fakes/fake-clock';
import { eventually } from '../../../harness/eventually';

const HOUR = 3_600_000;
const START = 1_700_000_000_000;

/** A retrainer the test answers by hand: each call waits until the test resolves or rejects it. */
class FakeRetrainer implements ModelRetrainer {
  readonly holdoutMs = 6 * HOUR;
  readonly requests: RetrainRequest[] = [];
  private answers: { resolve: (o: RetrainOutcome) => void; reject: (e: unknown) => void }[] = [];

  retrain(request: RetrainRequest): Promise<RetrainOutcome> {
    this.requests.push(request);
    return new Promise((resolve, reject) => this.answers.push({ resolve, reject }));
  }

  answer(outcome: Partial<RetrainOutcome>): void {
    const next = this.answers.shift();
    if (next === undefined) throw new Error('no retrain is waiting for an answer');
    next.resolve({
      promoted: false,
      reason: 'PR-AUC 0.3000 <= serving 0.4000',
      candidate: 'v2',
      serving: 'v1',
      candidatePrAuc: 0.3,
      servingPrAuc: 0.4,
      recentRows: 500,
      ...outcome,
    });
  }

  fail(err: unknown): void {
    const next = this.answers.shift();
    if (next === undefined) throw new Error('no retrain is waiting for an answer');
    next.reject(err);
  }

  get waiting(): number {
    return this.answers.length;
  }
}

/** A recorded trace of `hours` with `preemptions` pre-emptions, in nc-trace/1, plus one torn line. */
function writeTrace(path: string, hours: number, preemptions: number): void {
  const lines = [JSON.stringify({ format: 'nc-trace/1' })];
  for (let i = 0; i < 4; i += 1) lines.push(JSON.stringify({ t: START, node: `n${i}`, pool: 'p', event: 'join' }));
  for (let i = 0; i < preemptions; i += 1) {
    lines.push(
      JSON.stringify({
        t: START + Math.round(((i + 1) * hours * HOUR) / (preemptions + 1)),
        node: `n${i % 4}`,
        event: 'preempted',
      }),
    );
  }
  lines.push(JSON.stringify({ t: START + hours * HOUR, node: 'n0', metrics: { cpu: 0.5 } }));
  writeFileSync(path, `${lines.join('\n')}\n{"t":17000`);
}

/** pino writing JSON lines into an array the test reads back. */
function capture(): { log: pino.Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n'))
        if (l.trim() !== '') lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  return { log: pino({ level: 'info' }, stream), lines };
}

describe('RetrainTimer (issue 6: local-mode retrain)', () => {
  let dir: string;
  let tracePath: string;
  let clock: FakeClock;
  let retrainer: FakeRetrainer;
  let promoted: RetrainOutcome[];
  let loadFails: boolean;
  let captured: ReturnType<typeof capture>;
  let abort: AbortController;

  const config = (over: Partial<RetrainTimerConfig> = {}): RetrainTimerConfig => ({
    intervalMs: HOUR,
    registry: join(dir, 'models'),
    workDir: join(dir, 'work'),
    minSpanMs: 12 * HOUR,
    minPreemptions: 5,
    seedModelDir: '',
    ...over,
  });
  const timer = (over: Partial<RetrainTimerConfig> = {}): RetrainTimer =>
    new RetrainTimer(config(over), {
      clock,
      log: captured.log,
      retrainer,
      trace: { flush: () => Promise.resolve(), files: () => [join(dir, 'missing.ndjson'), tracePath] },
      promoted: (o) => {
        promoted.push(o);
        return loadFails ? Promise.reject(new Error('NC_MODEL_CORRUPT')) : Promise.resolve();
      },
    });
  const messages = (): unknown[] => captured.lines.map((l) => l.msg);
  /** The retrain has reached the retrainer (after its snapshot) and waits for the test's answer. */
  const retraining = (count: number): Promise<void> =>
    eventually(
      async () => {
        expect(retrainer.requests).toHaveLength(count);
        expect(retrainer.waiting).toBe(1);
      },
      10_000,
      5,
    );
  /** The timer's loop is asleep until its next interval. */
  const asleep = (): Promise<void> => eventually(async () => expect(clock.waiting).toBe(1), 10_000, 5);
  const logged = (msg: string): Promise<void> => eventually(async () => expect(messages()).toContain(msg), 10_000, 5);

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'nc-retrain-timer-'));
    tracePath = join(dir, 'observed.ndjson');
    writeTrace(tracePath, 20, 12);
    clock = new FakeClock(START, { sleep: 'waits' });
    retrainer = new FakeRetrainer();
    promoted = [];
    loadFails = false;
    captured = capture();
    abort = new AbortController();
  });
  afterEach(() => {
    abort.abort();
    rmSync(dir, { recursive: true, force: true });
  });

  it('runs once per interval, never before, on a snapshot of the recorded trace', async () => {
    const t = timer({ seedModelDir: '/models/seed' });
    const loop = t.run(abort.signal);
    await asleep();
    clock.advance(HOUR - 1);
    expect(clock.waiting).toBe(1);
    expect(retrainer.requests).toHaveLength(0);
    clock.advance(1);
    await retraining(1);
    expect(retrainer.requests[0]).toEqual({
      trace: join(dir, 'work', 'retrain-trace.ndjson'),
      registry: join(dir, 'models'),
      seedModelDir: '/models/seed',
    });
    // While it runs, time passing starts nothing: the next interval starts when the run ends.
    clock.advance(3 * HOUR);
    expect(clock.waiting).toBe(0);
    retrainer.answer({});
    await asleep();
    expect(retrainer.requests).toHaveLength(1);
    clock.advance(HOUR);
    await retraining(2);
    retrainer.answer({});
    await asleep();
    abort.abort();
    await loop;
    expect(t.counts).toMatchObject({ kept: 2, failed: 0 });
  });

  it('never overlaps two runs: a trigger while one runs is skipped', async () => {
    const t = timer();
    const first = t.runOnce();
    await retraining(1);
    const second = await t.runOnce();
    expect(second).toEqual({ status: 'skipped', reason: 'a retrain is already running' });
    expect(retrainer.requests).toHaveLength(1);
    retrainer.answer({ promoted: true, reason: 'PR-AUC 0.5000 > serving 0.4000', candidatePrAuc: 0.5 });
    expect((await first).status).toBe('promoted');
    // Once it ended, the next trigger runs.
    const third = t.runOnce();
    await retraining(2);
    retrainer.answer({});
    expect((await third).status).toBe('kept');
    expect(t.counts).toEqual({ promoted: 1, kept: 1, skipped: 1, failed: 0 });
  });

  it('logs the outcome with both scores and why, and loads a promoted model', async () => {
    const t = timer();
    const run = t.runOnce();
    await retraining(1);
    retrainer.answer({
      promoted: true,
      reason: 'PR-AUC 0.5100 > serving 0.4200',
      candidate: 'v3',
      serving: 'v2',
      candidatePrAuc: 0.51,
      servingPrAuc: 0.42,
    });
    await run;
    const line = captured.lines.find((l) => l.msg === 'retrain promoted a new model');
    expect(line).toMatchObject({
      status: 'promoted',
      candidate: 'v3',
      serving: 'v2',
      candidatePrAuc: 0.51,
      servingPrAuc: 0.42,
      reason: 'PR-AUC 0.5100 > serving 0.4200',
      traceSpanMs: 20 * HOUR,
    });
    expect(promoted.map((o) => o.candidate)).toEqual(['v3']);

    const kept = t.runOnce();
    await retraining(2);
    retrainer.answer({});
    await kept;
    expect(captured.lines.find((l) => l.msg === 'retrain kept the serving model')).toMatchObject({
      status: 'kept',
      candidatePrAuc: 0.3,
      servingPrAuc: 0.4,
      reason: 'PR-AUC 0.3000 <= serving 0.4000',
    });
    // A kept candidate is not loaded.
    expect(promoted).toHaveLength(1);
  });

  it('skips, without training, while the recorded trace is too short or has too few pre-emptions', async () => {
    writeTrace(tracePath, 8, 12);
    const short = await timer().runOnce();
    expect(short).toMatchObject({ status: 'skipped', stats: { preemptions: 12, skipped: 1 } });
    writeTrace(tracePath, 20, 3);
    const few = await timer().runOnce();
    expect(few).toMatchObject({ status: 'skipped', reason: '3 recorded pre-emptions < retrainMinPreemptions 5' });
    // Long enough for retrainMinSpan, but not longer than the retrainer's validation window.
    writeTrace(tracePath, 5, 12);
    const window = await timer({ minSpanMs: HOUR }).runOnce();
    expect(window).toMatchObject({ status: 'skipped' });
    expect((window as { reason: string }).reason).toContain('validation window');
    expect(retrainer.requests).toHaveLength(0);
    expect(messages().filter((m) => m === 'retrain skipped: not enough recorded data')).toHaveLength(3);
  });

  it('a failed retrain is logged with its code and the timer keeps going; the serving model is untouched', async () => {
    const t = timer();
    const loop = t.run(abort.signal);
    await asleep();
    clock.advance(HOUR);
    await retraining(1);
    retrainer.fail(new ForecastCliError('NC_FORECAST_TRAINING_FAILED', 'one class only'));
    await logged('retrain failed; serving model unchanged');
    expect(captured.lines.find((l) => l.msg === 'retrain failed; serving model unchanged')).toMatchObject({
      code: 'NC_FORECAST_TRAINING_FAILED',
      status: 'failed',
    });
    expect(promoted).toHaveLength(0);
    await asleep();
    clock.advance(HOUR);
    await retraining(2);
    retrainer.answer({ promoted: true, reason: 'no serving model to beat', serving: null, servingPrAuc: null });
    await asleep();
    abort.abort();
    await loop;
    expect(t.counts).toMatchObject({ failed: 1, promoted: 1 });
    expect(promoted).toHaveLength(1);
  });

  it('a promoted model the serving side refuses is logged, and the run still counts as promoted', async () => {
    loadFails = true;
    const t = timer();
    const run = t.runOnce();
    await retraining(1);
    retrainer.answer({ promoted: true, reason: 'PR-AUC 0.5 > serving 0.4' });
    expect((await run).status).toBe('promoted');
    expect(messages()).toContain('promoted model not loaded; serving model unchanged');
  });
});
