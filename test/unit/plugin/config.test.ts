import { encode } from '@msgpack/msgpack';
import { ExtData } from '@msgpack/msgpack';
import {
  MAGIC_COOKIE_VALUE,
  parseLaunchEnv,
  parsePluginConfig,
  parseTaskConfig,
  pluginConfigSpec,
  taskConfigSpec,
} from '../../../plugin/src/config';
import type { Spec } from '../../../proto/gen/nomad/plugins/shared/hclspec/hcl_spec';
import { PLUGIN_ATTRIBUTES, pluginConfig, taskDriverConfig } from './rig';

function failure(fn: () => unknown): { code?: string; message: string; attribute?: string } {
  try {
    fn();
  } catch (err) {
    return err as { code?: string; message: string; attribute?: string };
  }
  throw new Error('expected a failure');
}

describe('plugin (agent) config', () => {
  it('resolves every default from an empty block and freezes the result', () => {
    const config = parsePluginConfig(pluginConfig());
    expect(config).toEqual({
      sidecarSocket: '/run/nc/sidecar.sock',
      sidecarTimeoutMs: 30_000,
      nomadAddress: 'http://127.0.0.1:4646',
      nomadToken: '',
      nomadCaFile: '',
      checkpointWaitMs: 30_000,
      migrationMode: 'auto',
      fingerprintPeriodMs: 15_000,
      consulAddress: 'http://127.0.0.1:8500',
      consulToken: '',
    });
    expect(Object.isFrozen(config)).toBe(true);
    expect(parsePluginConfig(new Uint8Array()).sidecarSocket).toBe('/var/lib/nomad-chain/sidecar.sock');
  });

  it.each([
    ['sidecar_socket', { sidecar_socket: 'relative.sock' }],
    ['sidecar_timeout', { sidecar_timeout: '10' }],
    ['sidecar_timeout', { sidecar_timeout: '100ms' }],
    ['nomad_address', { nomad_address: 'localhost:4646' }],
    ['nomad_token', { nomad_address: '', nomad_token: 'secret' }],
    ['nomad_ca_file', { nomad_address: 'https://127.0.0.1:4646', nomad_ca_file: 'ca.crt' }],
    ['nomad_ca_file', { nomad_address: 'http://127.0.0.1:4646', nomad_ca_file: '/etc/nomad/ca.crt' }],
    ['checkpoint_wait', { checkpoint_wait: '1h' }],
    ['migration_mode', { migration_mode: 'teleport' }],
    ['fingerprint_period', { fingerprint_period: 'often' }],
    ['consul_address', { consul_address: '127.0.0.1:8500' }],
    ['consul_token', { consul_address: '', consul_token: 'secret' }],
    ['sidecar_socket', { sidecar_socket: 5 }],
    ['socket', { socket: '/x' }],
  ])('names the attribute %s when it is wrong', (attribute, values) => {
    const err = failure(() => parsePluginConfig(pluginConfig(values)));
    expect(err.code).toBe('NC_PLUGIN_CONFIG_INVALID');
    expect(err.attribute).toBe(attribute);
    expect(err.message).toContain(`attribute "${attribute}"`);
  });

  it('gives every attribute a default whose Attr names itself (a Default gets no implied name)', () => {
    const spec = pluginConfigSpec();
    expect(spec.block?.$case).toBe('object');
    const attributes = spec.block?.$case === 'object' ? spec.block.object.attributes : [];
    expect(attributes.map((a) => a.key).sort()).toEqual(PLUGIN_ATTRIBUTES);
    for (const { key, value } of attributes) {
      const block = (value as Spec).block;
      expect(block?.$case).toBe('default');
      if (block?.$case !== 'default') continue;
      expect(block.default.primary?.block).toEqual({
        $case: 'Attr',
        Attr: { name: key, type: 'string', required: false },
      });
      expect(block.default.default?.block?.$case).toBe('literal');
    }
  });
});

describe('task config', () => {
  it('decodes what go-cty writes, with defaults', () => {
    expect(
      parseTaskConfig(taskDriverConfig({ args: ['a', 'b'], checkpoint_wait: '1m30s', migration_mode: 'lazy' })),
    ).toEqual({
      command: '/bin/sleep',
      args: ['a', 'b'],
      cwd: '/',
      rootfs: '',
      chain: true,
      checkpointWaitMs: 90_000,
      migrationMode: 'lazy',
    });
  });

  it.each([
    ['command', { command: null }],
    ['command', { command: '  ' }],
    ['args', { args: 'sleep 60' }],
    ['args[1]', { args: ['ok', 7] }],
    ['cwd', { cwd: 'work' }],
    ['rootfs', { rootfs: 'rootfs' }],
    ['chain', { chain: 'yes' }],
    ['checkpoint_wait', { checkpoint_wait: 'soon' }],
    ['checkpoint_wait', { checkpoint_wait: '11m' }],
    ['checkpoint_wait', { chain: false, checkpoint_wait: '10s' }],
    ['migration_mode', { chain: false, migration_mode: 'lazy' }],
    ['migration_mode', { migration_mode: 'fast' }],
    ['image', { image: 'redis' }],
  ])('names the attribute %s when it is wrong', (attribute, values) => {
    const err = failure(() => parseTaskConfig(taskDriverConfig(values)));
    expect(err.code).toBe('NC_PLUGIN_TASK_CONFIG_INVALID');
    expect(err.message).toContain(`task config: attribute "${attribute}"`);
  });

  it('rejects bytes that are not a msgpack object, and unknown (extension) cty values', () => {
    expect(failure(() => parseTaskConfig(new Uint8Array([0xc1]))).code).toBe('NC_PLUGIN_TASK_CONFIG_INVALID');
    expect(failure(() => parseTaskConfig(encode(['a']))).message).toContain('expected an object');
    const unknown = encode({ command: new ExtData(0, new Uint8Array()) });
    expect(failure(() => parseTaskConfig(unknown)).message).toContain('attribute "command"');
  });

  it('requires command in its spec and defaults the rest', () => {
    const spec = taskConfigSpec();
    const attributes = spec.block?.$case === 'object' ? spec.block.object.attributes : [];
    const command = attributes.find((a) => a.key === 'command')?.value?.block;
    expect(command).toEqual({ $case: 'Attr', Attr: { name: 'command', type: 'string', required: true } });
    expect(attributes.find((a) => a.key === 'args')?.value?.block?.$case).toBe('default');
  });
});

describe('launch environment', () => {
  it("refuses to run without Nomad's magic cookie, saying what the binary is", () => {
    const err = failure(() => parseLaunchEnv({}));
    expect(err.code).toBe('NC_PLUGIN_COOKIE_MISMATCH');
    expect(err.message).toContain('This binary is a plugin');
  });

  it('refuses a host that does not offer protocol version 2', () => {
    const err = failure(() =>
      parseLaunchEnv({ NOMAD_PLUGIN_MAGIC_COOKIE: MAGIC_COOKIE_VALUE, PLUGIN_PROTOCOL_VERSIONS: '1,3' }),
    );
    expect(err.code).toBe('NC_PLUGIN_PROTOCOL_UNSUPPORTED');
  });

  it("accepts Nomad's launch and reads the log level", () => {
    const launch = parseLaunchEnv({
      NOMAD_PLUGIN_MAGIC_COOKIE: MAGIC_COOKIE_VALUE,
      PLUGIN_PROTOCOL_VERSIONS: '2',
      NOMAD_CHAIN_PLUGIN_LOG_LEVEL: 'debug',
      TMPDIR: '/tmp/x',
    });
    expect(launch).toEqual({ logLevel: 'debug', socketParentDir: '/tmp/x' });
  });
});
