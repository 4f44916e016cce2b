import type { Clock } from '../../common/clock';
import { errorMessage } from '../../common/errors';
import type { Logger } from '../../common/logging';
import type { Attribute } from '../../proto/gen/nomad/plugins/shared/structs/proto/attribute';
import { FingerprintResponse_HealthState as Health } from '../../proto/gen/nomad/plugins/drivers/proto/driver';
import type { FingerprintResponse } from '../../proto/gen/nomad/plugins/drivers/proto/driver';
import type { BasePlugin } from './base-plugin';
import { PLUGIN_NAME } from './base-plugin';

/** Node attribute under which each node publishes its sidecar's State Transfer address, for its peers. */
export const TRANSFER_ADDRESS_ATTRIBUTE = `driver.${PLUGIN_NAME}.transfer_address`;

/**
 * The driver's health as Nomad's scheduler sees it: healthy only when the sidecar answers and reports that
 * it can run and move tasks (CRIU and runc usable); otherwise unhealthy, with the reason.
 */
export class Fingerprinter {
  constructor(
    private readonly base: BasePlugin,
    private readonly version: string,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {}

  async check(): Promise<FingerprintResponse> {
    const attributes: Record<string, Attribute> = { [`driver.${PLUGIN_NAME}.version`]: str(this.version) };
    let runtime;
    try {
      runtime = this.base.current();
    } catch (err) {
      return { attributes, health: Health.UNHEALTHY, healthDescription: errorMessage(err), err: '' };
    }
    let features;
    try {
      features = await runtime.sidecar.features();
    } catch (err) {
      return {
        attributes,
        health: Health.UNHEALTHY,
        healthDescription: `sidecar unreachable at ${runtime.config.sidecarSocket}: ${errorMessage(err)}`,
        err: '',
      };
    }
    const prefix = `driver.${PLUGIN_NAME}`;
    Object.assign(attributes, {
      [`${prefix}.criu_version`]: str(features.criuVersion),
      [`${prefix}.runc_version`]: str(features.runcVersion),
      [`${prefix}.pre_copy`]: bool(features.preCopy),
      [`${prefix}.lazy_pages`]: bool(features.lazyPages),
      [`${prefix}.node_name`]: str(features.nodeName),
      [TRANSFER_ADDRESS_ATTRIBUTE]: str(features.transferAddress),
    });
    if (!features.healthy) {
      const reason = features.reason === '' ? 'the sidecar reports it cannot run tasks' : features.reason;
      return { attributes, health: Health.UNHEALTHY, healthDescription: reason, err: '' };
    }
    return { attributes, health: Health.HEALTHY, healthDescription: 'Healthy', err: '' };
  }

  /** The first fingerprint at once, then one whenever it changes; checked every fingerprint_period. */
  async *stream(signal: AbortSignal): AsyncGenerator<FingerprintResponse> {
    let last: string | undefined;
    while (!signal.aborted) {
      const fingerprint = await this.check();
      const key = JSON.stringify(fingerprint);
      if (key !== last) {
        if (last !== undefined)
          this.log.info({ health: fingerprint.health, reason: fingerprint.healthDescription }, 'fingerprint changed');
        last = key;
        yield fingerprint;
      }
      const periodMs = this.periodMs();
      try {
        await this.clock.sleep(periodMs, signal);
      } catch {
        return;
      }
    }
  }

  private periodMs(): number {
    try {
      return this.base.current().config.fingerprintPeriodMs;
    } catch {
      return 1000;
    }
  }
}

function str(value: string): Attribute {
  return { value: { $case: 'stringVal', stringVal: value }, unit: '' };
}

function bool(value: boolean): Attribute {
  return { value: { $case: 'boolVal', boolVal: value }, unit: '' };
}
