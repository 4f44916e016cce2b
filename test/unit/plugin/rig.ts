import { encode } from '@msgpack/msgpack';
import pino from 'pino';
import { errorCode } from '../../../common/errors';
import { BasePlugin, PLUGIN_VERSION } from '../../../plugin/src/base-plugin';
import { Chaining } from '../../../plugin/src/chaining';
import { ChainDriver } from '../../../plugin/src/driver';
import { Fingerprinter } from '../../../plugin/src/fingerprint';
import { TaskEventBus } from '../../../plugin/src/task-events';
import { TaskStore } from '../../../plugin/src/task-store';
import type { DriverTaskEvent, TaskConfig } from '../../../proto/gen/nomad/plugins/drivers/proto/driver';
import { TaskConfig as TaskConfigMessage } from '../../../proto/gen/nomad/plugins/drivers/proto/driver';
import { FakeAllocationLookup } from '../../fakes/fake-allocation-lookup';
import { FakeClock } from '../../fakes/fake-clock';
import { FakeSidecarCluster, type FakeSidecarApi } from '../../fakes/fake-sidecar-api';

export const silent = pino({ level: 'silent' });

/** The plugin config's attributes, sorted: what Nomad's msgpack of a decoded config holds. */
export const PLUGIN_ATTRIBUTES = [
  'checkpoint_wait',
  'consul_address',
  'consul_token',
  'fingerprint_period',
  'migration_mode',
  'nomad_address',
  'nomad_ca_file',
  'nomad_token',
  'sidecar_socket',
  'sidecar_timeout',
];
const TASK_ATTRIBUTES = ['args', 'chain', 'checkpoint_wait', 'command', 'cwd', 'migration_mode', 'rootfs'];

/**
 * What go-cty's msgpack encoder writes for a decoded object: every attribute of the schema, keys sorted,
 * unset ones nil (Nomad's decoder fills defaults before encoding, the test passes them explicitly).
 */
export function ctyObject(keys: readonly string[], values: Record<string, unknown>): Uint8Array {
  const all = new Set([...keys, ...Object.keys(values)]);
  const object: Record<string, unknown> = {};
  for (const key of [...all].sort()) object[key] = values[key] ?? null;
  return encode(object);
}

export function pluginConfig(values: Record<string, unknown> = {}): Uint8Array {
  return ctyObject(PLUGIN_ATTRIBUTES, {
    sidecar_socket: '/run/nc/sidecar.sock',
    sidecar_timeout: '30s',
    nomad_address: 'http://127.0.0.1:4646',
    nomad_token: '',
    nomad_ca_file: '',
    checkpoint_wait: '30s',
    migration_mode: 'auto',
    fingerprint_period: '15s',
    consul_address: 'http://127.0.0.1:8500',
    consul_token: '',
    ...values,
  });
}

export function taskDriverConfig(values: Record<string, unknown> = {}): Uint8Array {
  return ctyObject(TASK_ATTRIBUTES, {
    command: '/bin/sleep',
    args: ['60'],
    cwd: '/',
    rootfs: '',
    chain: true,
    ...values,
  });
}

export function taskConfig(allocId: string, name: string, driverConfig = taskDriverConfig()): TaskConfig {
  return TaskConfigMessage.fromPartial({
    id: `${allocId}/${name}/0a1b2c3d`,
    name,
    allocId,
    jobId: 'job',
    namespace: 'default',
    allocDir: `/var/nomad/alloc/${allocId}`,
    stdoutPath: `/var/nomad/alloc/${allocId}/alloc/logs/.${name}.stdout.fifo`,
    stderrPath: `/var/nomad/alloc/${allocId}/alloc/logs/.${name}.stderr.fifo`,
    env: { NOMAD_ALLOC_ID: allocId },
    msgpackDriverConfig: Buffer.from(driverConfig),
    resources: { linuxResources: { memoryLimitBytes: 268435456, cpuShares: 512 } },
  });
}

export interface Rig {
  /** This node's sidecar (node-a); its cluster also holds node-b's, the peer of a hand-over. */
  readonly sidecar: FakeSidecarApi;
  readonly lookup: FakeAllocationLookup;
  readonly base: BasePlugin;
  readonly driver: ChainDriver;
  readonly clock: FakeClock;
  readonly events: DriverTaskEvent[];
  readonly store: TaskStore;
}

/** A driver over fakes, configured as SetConfig would; `withLookup: false` is nomad_address = "". */
export function rig(options: { withLookup?: boolean; config?: Record<string, unknown> } = {}): Rig {
  const lookup = new FakeAllocationLookup();
  const clock = new FakeClock();
  const sidecars = new FakeSidecarCluster(clock);
  const sidecar = sidecars.add('node-a', '198.18.0.2:7451');
  sidecars.add('node-b', '198.18.0.3:7451');
  const withLookup = options.withLookup ?? true;
  const base = new BasePlugin(
    PLUGIN_VERSION,
    (config) => ({ config, sidecar, lookup: withLookup ? lookup : undefined }),
    silent,
  );
  base.setConfig({
    msgpackConfig: Buffer.from(pluginConfig(options.config)),
    nomadConfig: undefined,
    pluginApiVersion: 'v0.1.0',
  });
  const bus = new TaskEventBus(() => clock.now());
  const events: DriverTaskEvent[] = [];
  const listening = new AbortController();
  void (async () => {
    for await (const event of bus.subscribe(listening.signal)) events.push(event);
  })();
  const store = new TaskStore();
  const driver = new ChainDriver({
    base,
    store,
    chaining: new Chaining(bus, silent),
    fingerprinter: new Fingerprinter(base, PLUGIN_VERSION, clock, silent),
    events: bus,
    clock,
    log: silent,
  });
  return { sidecar, lookup, base, driver, clock, events, store };
}

/** Lets the event subscriber drain what was emitted synchronously. */
export function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** The `code` of what `fn` throws (tests assert on codes, not classes: STYLE.md B3). */
export function thrownCode(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return errorCode(err);
  }
  throw new Error('expected a throw');
}
