import { parseConfig, rawOptionsFrom } from '../../../sidecar/src/config';

describe('sidecar config', () => {
  it('fills defaults, converts durations and freezes the result', () => {
    const config = parseConfig({}, 'host-1');
    expect(config).toMatchObject({
      nodeName: 'host-1',
      runcBin: '/usr/sbin/runc',
      criuBin: '/usr/local/sbin/criu',
      taskNetworkNamespace: '',
      cgroupParent: '/nomad-chain/host-1',
      stopTimeoutMs: 10_000,
      lazyConnectTimeoutMs: 15_000,
      advertiseAddress: '0.0.0.0:7451',
      tls: undefined,
      pageServerHost: '0.0.0.0',
    });
    expect(Object.isFrozen(config)).toBe(true);
  });

  it('reads binaries and the task namespace from the environment', () => {
    const raw = rawOptionsFrom(
      {
        CRIU_BIN: '/opt/criu',
        RUNC_BIN: '/opt/runc',
        NOMAD_CHAIN_TASK_NETNS: '/run/netns/n1',
        NOMAD_CHAIN_ADVERTISE_ADDRESS: '198.18.0.2:7450',
      },
      undefined,
    );
    expect(parseConfig(raw, 'h')).toMatchObject({
      criuBin: '/opt/criu',
      runcBin: '/opt/runc',
      taskNetworkNamespace: '/run/netns/n1',
      pageServerHost: '198.18.0.2',
    });
  });

  it("points telemetry at the forecaster from NOMAD_CHAIN_FORECASTER_ADDRESS, keeping the file's other telemetry options", () => {
    const raw = rawOptionsFrom(
      { NOMAD_CHAIN_FORECASTER_ADDRESS: '198.18.0.1:7460' },
      JSON.stringify({ telemetry: { interval: '5s' } }),
    );
    expect(parseConfig(raw, 'h').telemetry).toMatchObject({
      enabled: true,
      forecasterAddress: '198.18.0.1:7460',
      intervalMs: 5000,
    });
    expect(() => rawOptionsFrom({ NOMAD_CHAIN_FORECASTER_ADDRESS: 'x:1' }, '{"telemetry": 3}')).toThrow(
      expect.objectContaining({ field: 'telemetry' }) as Error,
    );
  });

  it('gives tasks their own user namespace unless told otherwise, with one id range on every node', () => {
    expect(parseConfig({}, 'h')).toMatchObject({ userNamespace: 'auto', idMapping: { hostId: 100_000, size: 65_536 } });
    const raw = rawOptionsFrom(
      {
        NOMAD_CHAIN_USER_NAMESPACE: 'on',
        NOMAD_CHAIN_USER_NAMESPACE_HOST_ID: '200000',
        NOMAD_CHAIN_USER_NAMESPACE_SIZE: '1000',
      },
      undefined,
    );
    expect(parseConfig(raw, 'h')).toMatchObject({ userNamespace: 'on', idMapping: { hostId: 200_000, size: 1000 } });
    expect(() => parseConfig({ userNamespace: 'yes' }, 'h')).toThrow(
      expect.objectContaining({ field: 'userNamespace' }) as Error,
    );
    expect(() => parseConfig({ userNamespaceHostId: 2 ** 32 - 10, userNamespaceSize: 100 }, 'h')).toThrow(
      expect.objectContaining({ field: 'userNamespaceSize' }) as Error,
    );
  });

  it('names the field of a bad value', () => {
    const failure = (raw: Record<string, unknown>): unknown => {
      try {
        parseConfig(raw, 'h');
      } catch (err) {
        return err;
      }
      return undefined;
    };
    expect(failure({ criuBin: 'criu' })).toMatchObject({ code: 'NC_CONFIG_INVALID', field: 'criuBin' });
    expect(failure({ stopTimeout: 'soon' })).toMatchObject({ field: 'stopTimeout' });
    expect(failure({ taskNetns: '/x' })).toMatchObject({ field: 'taskNetns' });
    expect(failure({ nodeName: 'a/b' })).toMatchObject({ field: 'nodeName' });
    expect(failure({ backgroundCheckpointInterval: '30s' })).toMatchObject({ field: 'backgroundBuddy' });
    expect(failure({ backgroundCheckpointInterval: '30s', backgroundBuddy: '10.0.0.2:7451' })).toMatchObject({
      field: 'backgroundCheckpointInterval',
    });
    expect(failure({ telemetry: 'on' })).toMatchObject({ field: 'telemetry' });
  });

  it('turns background checkpoints on with a buddy and the transfer TLS material', () => {
    const config = parseConfig(
      {
        backgroundCheckpointInterval: '30s',
        backgroundBuddy: '10.0.0.2:7451',
        tlsCaFile: '/tls/ca.crt',
        tlsCertFile: '/tls/n.crt',
        tlsKeyFile: '/tls/n.key',
      },
      'h',
    );
    expect(config).toMatchObject({ backgroundCheckpointIntervalMs: 30_000, backgroundBuddy: '10.0.0.2:7451' });
    expect(parseConfig({}, 'h').backgroundCheckpointIntervalMs).toBe(0);
    expect(parseConfig({}, 'h').telemetry.enabled).toBe(false);
  });
});
