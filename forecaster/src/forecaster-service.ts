import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Server } from '@grpc/grpc-js';
import type { Clock } from '../../common/clock';
import { ConfigError } from '../../common/config-error';
import { errorCode } from '../../common/errors';
import { HealthStatus, healthService } from '../../common/grpc/health-service';
import { bindServer, shutdownServer } from '../../common/grpc/server';
import type { Logger } from '../../common/logging';
import { TelemetryService } from '../../proto/gen/chain/v1/telemetry';
import { HealthService } from '../../proto/gen/grpc/health/v1/health';
import { ActionExecutor } from './actions/action-executor';
import type { SchedulerActions } from './actions/scheduler-actions';
import type { ForecasterConfig } from './config';
import { ForecastError } from './errors';
import type { SchedulerEvents } from './events/scheduler-events';
import { FeatureBuilder } from './features/feature-builder';
import type { FeatureSpec } from './features/feature-spec';
import { Forecaster } from './forecaster';
import { HttpApi } from './http/http-api';
import type { MetricFamily } from './http/prometheus-text';
import { TelemetryIngest } from './ingest/telemetry-ingest';
import { currentModelDir } from './model/model-registry';
import { CARD_FILE, MODEL_FILE, OnnxModelRunner } from './model/onnx-model-runner';
import { ServingModel } from './model/serving-model';
import { DrainPolicy } from './policy/drain-policy';
import { TraceRecorder } from './record/trace-recorder';
import type { ModelRetrainer } from './retrain/model-retrainer';
import { RetrainTimer } from './retrain/retrain-timer';
import { ClusterWindows } from './windows/cluster-windows';

export interface ForecasterServiceDeps {
  readonly config: ForecasterConfig;
  readonly spec: FeatureSpec;
  readonly clock: Clock;
  readonly log: Logger;
  /** The scheduler adapter: Nomad's (NomadSchedulerActions) or the local controller's. */
  readonly actions: SchedulerActions;
  /** Optional: the scheduler's event source (Nomad's event stream or the local controller's). */
  readonly events?: SchedulerEvents;
  /** Required when config.retrainIntervalMs > 0: what the retrain timer runs (PythonRetrainer in main.ts). */
  readonly retrainer?: ModelRetrainer;
}

/**
 * The whole forecaster, wired: telemetry gRPC server, windows, features, serving model (reloaded when modelDir
 * or the registry's current version changes), policy, actions, HTTP API, tick loop; with a dataDir, the trace
 * recorder, and with a retrain interval, the retrain timer. `main.ts` builds it with real adapters; local mode
 * and the integration tests build it with theirs.
 */
export class ForecasterService {
  readonly forecaster: Forecaster;
  readonly model: ServingModel;
  readonly windows: ClusterWindows;
  readonly executor: ActionExecutor;
  readonly policy: DrainPolicy;
  readonly retrainTimer: RetrainTimer | undefined;
  private readonly ingest: TelemetryIngest;
  private readonly grpc = new Server({ 'grpc.max_receive_message_length': 16 * 1024 * 1024 });
  private readonly health = new HealthStatus({ '': false, 'chain.v1.Telemetry': false });
  private readonly http: HttpApi;
  private readonly abort = new AbortController();
  private readonly loops: Promise<void>[] = [];
  private modelStamp = '';
  private loading: Promise<void> = Promise.resolve();
  telemetryPort = 0;
  httpPort = 0;

  private constructor(
    private readonly deps: ForecasterServiceDeps,
    readonly recorder: TraceRecorder | undefined,
  ) {
    const { config, spec, clock, log } = deps;
    this.windows = new ClusterWindows(
      {
        maxNodes: config.maxNodes,
        samplesPerNode: config.samplesPerNode,
        eventsPerNode: config.eventsPerNode,
        staleAfterMs: config.staleAfterMs,
      },
      spec.poolRetainMs,
      () => clock.now(),
      recorder,
    );
    this.model = new ServingModel(log.child({ component: 'model' }));
    // Read on every tick: a promoted model's thresholds apply from the tick after it starts serving.
    this.policy = new DrainPolicy(config.policy, {
      servingModel: () => (this.model.loaded ? this.model.card : undefined),
    });
    this.executor = new ActionExecutor(
      deps.actions,
      {
        prepared: (node) => this.policy.markPrepared(node),
        failed: (node, reason) => {
          this.policy.abandon(node, reason, clock.now());
        },
      },
      log.child({ component: 'actions' }),
      { clockScale: config.timeScale },
    );
    this.forecaster = new Forecaster({
      clock,
      windows: this.windows,
      features: new FeatureBuilder(spec),
      model: this.model,
      policy: this.policy,
      executor: config.act ? this.executor : undefined,
      log: log.child({ component: 'forecaster' }),
    });
    this.ingest = new TelemetryIngest(this.forecaster, log.child({ component: 'ingest' }));
    // Built whenever it can run, so an operator's (or a test's) on-demand retrain shares the timer's no-overlap.
    this.retrainTimer =
      deps.retrainer !== undefined && recorder !== undefined && config.modelRegistry !== ''
        ? new RetrainTimer(
            {
              intervalMs: config.retrainIntervalMs,
              registry: config.modelRegistry,
              workDir: join(config.dataDir, 'retrain'),
              minSpanMs: config.retrainMinSpanMs,
              minPreemptions: config.retrainMinPreemptions,
              seedModelDir: config.modelDir,
            },
            {
              clock,
              log: log.child({ component: 'retrain' }),
              retrainer: deps.retrainer,
              trace: recorder,
              promoted: () => this.loadModel(),
            },
          )
        : undefined;
    this.http = new HttpApi(
      {
        risks: () => this.forecaster.report(),
        risk: (node) => {
          const all = this.forecaster.reportFor(node);
          return all.pool === '' && all.decisions.length === 0 ? undefined : all;
        },
        metrics: () => this.metrics(),
        ready: () => this.model.loaded,
        model: () =>
          this.model.loaded ? { version: this.model.card.version, featureSpec: this.model.card.featureSpec } : null,
      },
      log.child({ component: 'http' }),
    );
  }

  /** Builds, loads the model (a start without a loadable model fails), binds both servers. Ticks start with `start`. */
  static async create(deps: ForecasterServiceDeps): Promise<ForecasterService> {
    const { config, log } = deps;
    if (config.retrainIntervalMs > 0 && deps.retrainer === undefined) {
      throw new ConfigError('retrainInterval', 'set, but the forecaster was built without a retrainer');
    }
    const recorder =
      config.dataDir === ''
        ? undefined
        : await TraceRecorder.open(
            { dir: join(config.dataDir, 'trace'), maxBytes: config.traceMaxBytes },
            log.child({ component: 'trace-recorder' }),
          );
    const service = new ForecasterService(deps, recorder);
    await service.loadModel();
    service.grpc.addService(TelemetryService, service.ingest.handlers());
    service.grpc.addService(HealthService, healthService(service.health));
    service.telemetryPort = await bindServer(
      service.grpc,
      `${deps.config.telemetryAddress}:${deps.config.telemetryPort}`,
    );
    service.httpPort = await service.http.listen(deps.config.httpAddress, deps.config.httpPort);
    service.health.set('', true);
    service.health.set('chain.v1.Telemetry', true);
    deps.log.info({ telemetryPort: service.telemetryPort, httpPort: service.httpPort }, 'forecaster listening');
    return service;
  }

  /** Starts the tick loop, the model watcher and the scheduler event follower. */
  start(): void {
    const { config, events, log } = this.deps;
    const signal = this.abort.signal;
    this.loops.push(this.forecaster.run(config.tickMs, signal));
    if (config.modelPollMs > 0) this.loops.push(this.watchModel(config.modelPollMs, signal));
    if (this.retrainTimer !== undefined && config.retrainIntervalMs > 0) this.loops.push(this.retrainTimer.run(signal));
    if (events !== undefined) {
      this.loops.push(
        events
          .follow((e) => this.forecaster.onSchedulerEvent(e), signal)
          .catch((err: unknown) => {
            if (!signal.aborted) log.error({ err, code: errorCode(err) }, 'scheduler events stopped');
          }),
      );
    }
  }

  /**
   * Loads the model to serve (the registry's current version, else modelDir) if it changed since the last
   * attempt. A corrupt or incompatible model is refused with its coded error and the serving model keeps serving.
   */
  loadModel(): Promise<void> {
    // One load at a time: the model watcher and the retrain timer may both ask for the same new version.
    const load = this.loading.then(() => this.loadIfChanged());
    this.loading = load.catch(() => undefined);
    return load;
  }

  private async loadIfChanged(): Promise<void> {
    const { spec, log } = this.deps;
    const dir = await this.servingDir();
    const stamp = `${dir}:${await this.stampOf(dir)}`;
    if (stamp === this.modelStamp) return;
    this.modelStamp = stamp;
    const card = await this.model.replace(() =>
      OnnxModelRunner.load(dir, {
        names: spec.names,
        specId: spec.id,
        ...(spec.sha256 === undefined ? {} : { specSha256: spec.sha256 }),
      }),
    );
    log.info({ version: card.version, thresholds: this.policy.describe() }, 'policy thresholds');
  }

  async stop(): Promise<void> {
    this.abort.abort();
    this.health.set('', false);
    this.ingest.closeAll();
    await Promise.allSettled(this.loops);
    await this.forecaster.settle();
    await this.recorder?.close();
    await shutdownServer(this.grpc, 2000);
    await this.http.close();
  }

  metrics(): MetricFamily[] {
    const s = this.forecaster.stats;
    const phases = this.policy.countByPhase();
    const actions = this.executor.stats();
    const risks = this.forecaster.report();
    return [
      { name: 'nc_forecaster_ticks_total', help: 'Scoring ticks run.', type: 'counter', samples: [{ value: s.ticks }] },
      {
        name: 'nc_forecaster_tick_seconds',
        help: 'Duration of the last tick.',
        type: 'gauge',
        samples: [{ value: s.lastTickMs / 1000 }],
      },
      {
        name: 'nc_forecaster_features_seconds',
        help: 'Feature building in the last tick.',
        type: 'gauge',
        samples: [{ value: s.lastFeaturesMs / 1000 }],
      },
      {
        name: 'nc_forecaster_score_seconds',
        help: 'The batched model call in the last tick.',
        type: 'gauge',
        samples: [{ value: s.lastScoreMs / 1000 }],
      },
      {
        name: 'nc_forecaster_score_failures_total',
        help: 'Ticks whose model call failed.',
        type: 'counter',
        samples: [{ value: s.scoreFailures }],
      },
      {
        name: 'nc_forecaster_nodes_scored',
        help: 'Nodes scored in the last tick.',
        type: 'gauge',
        samples: [{ value: s.lastNodes }],
      },
      {
        name: 'nc_forecaster_nodes_tracked',
        help: 'Node windows held.',
        type: 'gauge',
        samples: [{ value: this.windows.store.size }],
      },
      {
        name: 'nc_forecaster_nodes_evicted_total',
        help: 'Node windows dropped (LRU or silence).',
        type: 'counter',
        samples: [{ value: this.windows.store.evicted }],
      },
      {
        name: 'nc_forecaster_nodes',
        help: 'Nodes by policy phase.',
        type: 'gauge',
        samples: Object.entries(phases).map(([phase, value]) => ({ labels: { phase }, value })),
      },
      {
        name: 'nc_forecaster_node_risk',
        help: "Each node's latest probability of draining within the model horizon.",
        type: 'gauge',
        samples: risks
          .filter((r) => r.risk !== null)
          .map((r) => ({ labels: { node: r.node, pool: r.pool }, value: r.risk ?? 0 })),
      },
      {
        name: 'nc_forecaster_decisions_total',
        help: 'Decisions made (fence, drain, undo, hold).',
        type: 'counter',
        samples: [{ value: s.decisions }],
      },
      {
        name: 'nc_forecaster_actions_total',
        help: 'Decisions carried out through the scheduler adapter, by action; failed = not carried out.',
        type: 'counter',
        samples: Object.entries(actions).map(([action, value]) => ({ labels: { action }, value })),
      },
      {
        name: 'nc_forecaster_telemetry_samples_total',
        help: 'Telemetry samples stored.',
        type: 'counter',
        samples: [{ value: this.ingest.stats.samples }],
      },
      {
        name: 'nc_forecaster_telemetry_rejected_total',
        help: 'Malformed telemetry samples refused.',
        type: 'counter',
        samples: [{ value: this.ingest.stats.rejected }],
      },
      {
        name: 'nc_forecaster_telemetry_streams_total',
        help: 'Agent streams opened.',
        type: 'counter',
        samples: [{ value: this.ingest.stats.streams }],
      },
      {
        name: 'nc_forecaster_model_info',
        help: 'The serving model (value 1).',
        type: 'gauge',
        samples: this.model.loaded
          ? [{ labels: { version: this.model.card.version, feature_spec: this.model.card.featureSpec }, value: 1 }]
          : [],
      },
      {
        name: 'nc_forecaster_model_refusals_total',
        help: 'Candidate models refused (corrupt or incompatible).',
        type: 'counter',
        samples: [{ value: this.model.refusals }],
      },
      ...this.recordMetrics(),
    ];
  }

  private recordMetrics(): MetricFamily[] {
    const families: MetricFamily[] = [];
    const recorded = this.recorder?.stats;
    if (recorded !== undefined) {
      families.push(
        {
          name: 'nc_forecaster_trace_lines_total',
          help: 'Events and samples appended to the recorded trace.',
          type: 'counter',
          samples: [{ value: recorded.lines }],
        },
        {
          name: 'nc_forecaster_trace_dropped_total',
          help: 'Trace lines lost (buffer full or a failed write).',
          type: 'counter',
          samples: [{ value: recorded.dropped }],
        },
      );
    }
    if (this.retrainTimer !== undefined) {
      families.push({
        name: 'nc_forecaster_retrains_total',
        help: 'Retrains by outcome: promoted, kept (candidate not better), skipped (too little data, or one running), failed.',
        type: 'counter',
        samples: Object.entries(this.retrainTimer.counts).map(([outcome, value]) => ({ labels: { outcome }, value })),
      });
    }
    return families;
  }

  private async watchModel(pollMs: number, signal: AbortSignal): Promise<void> {
    const { clock, log } = this.deps;
    while (!signal.aborted) {
      await clock.sleep(pollMs, signal).catch(() => undefined);
      if (signal.aborted) return;
      await this.loadModel().catch((err: unknown) => log.warn({ err, code: errorCode(err) }, 'model reload refused'));
    }
  }

  private async servingDir(): Promise<string> {
    const { modelRegistry, modelDir } = this.deps.config;
    const current = modelRegistry === '' ? undefined : await currentModelDir(modelRegistry);
    if (current !== undefined) return current;
    if (modelDir !== '') return modelDir;
    throw new ForecastError('NC_MODEL_NOT_LOADED', `model registry ${modelRegistry} has no current version`, {
      context: { path: modelRegistry },
    });
  }

  /** Size and mtime of both files: a new model written into modelDir changes it. */
  private async stampOf(dir: string): Promise<string> {
    const parts = await Promise.all(
      [MODEL_FILE, CARD_FILE].map((f) =>
        stat(join(dir, f)).then(
          (s) => `${s.size}:${s.mtimeMs}`,
          () => 'missing',
        ),
      ),
    );
    return parts.join('/');
  }
}
