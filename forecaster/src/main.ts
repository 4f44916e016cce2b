import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { SystemClock } from '../../common/clock';
import { ScaledClock } from '../../common/scaled-clock';
import { ConfigError } from '../../common/config-error';
import { errorCode, errorMessage } from '../../common/errors';
import { createRootLogger } from '../../common/logging';
import { HttpNomadApi } from '../../common/nomad-api';
import { LocalControllerActions } from './actions/local-controller-actions';
import { NomadSchedulerActions } from './actions/nomad-scheduler-actions';
import type { SchedulerActions } from './actions/scheduler-actions';
import { SidecarPrestager, TlsPeerPrestageCaller } from './actions/sidecar-prestager';
import { PythonTrainer } from './cli/python-trainer';
import { parseConfig, rawOptionsFrom } from './config';
import type { ForecasterConfig } from './config';
import { LocalControllerEvents } from './events/local-controller-events';
import { NomadSchedulerEvents } from './events/nomad-scheduler-events';
import type { SchedulerEvents } from './events/scheduler-events';
import { loadFeatureSpec } from './features/feature-spec';
import { ForecasterService } from './forecaster-service';
import { PythonRetrainer } from './retrain/python-retrainer';

/**
 * Composition root of the forecaster: Nomad mode (nomadAddress) acts through Nomad's API and follows its event
 * stream; local mode (controllerAddress) does both through the local controller's HTTP API.
 */
async function main(argv: readonly string[]): Promise<void> {
  const configIndex = argv.indexOf('--config');
  const configPath = configIndex >= 0 ? argv[configIndex + 1] : undefined;
  const config = parseConfig(
    rawOptionsFrom(process.env, configPath === undefined ? undefined : readFileSync(configPath, 'utf8')),
  );
  if (config.nomadAddress === '' && config.controllerAddress === '') {
    throw new ConfigError('nomadAddress', 'set nomadAddress (Nomad mode) or controllerAddress (local mode)');
  }
  const log = createRootLogger({ level: config.logLevel, name: 'forecaster' });
  const system = new SystemClock();
  // A trace replay runs the whole forecaster on the trace's compressed time, as the controller's events do.
  const clock =
    config.timeScale === 1
      ? system
      : new ScaledClock(
          {
            scale: config.timeScale,
            originMs: config.timeOrigin,
            realOriginMs: config.timeOriginReal,
            spans: config.timeSpans,
          },
          system,
        );
  let actions: SchedulerActions;
  let events: SchedulerEvents;
  if (config.nomadAddress !== '') {
    const nomad = new HttpNomadApi(
      {
        address: config.nomadAddress,
        ...(config.nomadToken === '' ? {} : { token: config.nomadToken }),
        ...(config.nomadCaFile === '' ? {} : { tls: { ca: readNomadCa(config.nomadCaFile) } }),
      },
      clock,
    );
    const prestager = sidecarPrestager(config.sidecarTls, log.child({ component: 'prestage' }));
    if (prestager === undefined) log.info('sidecar TLS not configured: no pre-staging before drains');
    const nomadActions = new NomadSchedulerActions(nomad, log.child({ component: 'nomad-actions' }), {
      ...(prestager === undefined ? {} : { prestager }),
    });
    // A wrong or missing token stops the start here, with its code, before anything could be half done.
    await nomadActions.checkAccess();
    // Said once at start so an operator sees at once why no placeholders appear (Nomad's default is off).
    await nomadActions.checkPreemption();
    actions = nomadActions;
    events = new NomadSchedulerEvents(nomad, clock, log.child({ component: 'nomad-events' }));
  } else {
    actions = new LocalControllerActions({ address: config.controllerAddress });
    events = new LocalControllerEvents(
      { address: config.controllerAddress },
      clock,
      log.child({ component: 'controller-events' }),
    );
  }
  const service = await ForecasterService.create({
    config,
    spec: loadFeatureSpec(config.featureSpec),
    clock,
    log,
    actions,
    events,
    // Local mode's retrain timer runs the same trainer as `npm run forecast -- retrain`: the repo's .venv.
    ...(config.retrainIntervalMs > 0
      ? { retrainer: new PythonRetrainer(PythonTrainer.locate(resolve(__dirname, '..', '..'))) }
      : {}),
  });
  service.start();

  const stop = (signal: string): void => {
    log.info({ signal }, 'forecaster stopping');
    void service.stop().then(() => {
      log.flush();
      process.exit(0);
    });
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}

/** Pre-staging needs the forecaster's own certificate for the sidecars' mutual TLS; without it there is none. */
function sidecarPrestager(
  tls: ForecasterConfig['sidecarTls'],
  log: ReturnType<typeof createRootLogger>,
): SidecarPrestager | undefined {
  if (tls.caFile === '') return undefined;
  const pem = {
    ca: readOption('sidecarTlsCaFile', tls.caFile),
    cert: readOption('sidecarTlsCertFile', tls.certFile),
    key: readOption('sidecarTlsKeyFile', tls.keyFile),
  };
  return new SidecarPrestager(new TlsPeerPrestageCaller(pem), log);
}

function readOption(option: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (cause) {
    throw new ConfigError(option, `cannot read ${file}: ${errorMessage(cause)}`, { cause });
  }
}

/** Read once at start; a missing file stops the start naming the option. */
function readNomadCa(file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (cause) {
    throw new ConfigError('nomadCaFile', `cannot read ${file}: ${errorMessage(cause)}`, { cause });
  }
}

main(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`forecaster: ${errorMessage(err)} (${errorCode(err) ?? 'NC_UNEXPECTED'})\n`);
  process.exit(1);
});
