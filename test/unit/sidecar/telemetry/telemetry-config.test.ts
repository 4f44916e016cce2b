import { parseTelemetryConfig } from '../../../../sidecar/src/telemetry/telemetry-config';

describe('parseTelemetryConfig', () => {
  it('is off without a forecaster address and fills every default when on', () => {
    expect(parseTelemetryConfig({}, '/var/lib/nomad-chain').enabled).toBe(false);
    expect(
      parseTelemetryConfig(
        { forecasterAddress: 'forecaster:7460', sources: { aws: {}, gcp: {}, azure: { vmName: 'vm1' } } },
        '/data',
      ),
    ).toEqual({
      enabled: true,
      forecasterAddress: 'forecaster:7460',
      intervalMs: 15_000,
      bufferSamples: 5760,
      maxBatch: 256,
      reconnectMinMs: 500,
      reconnectMaxMs: 30_000,
      nodePool: 'default',
      nodeClass: '',
      procRoot: '/proc',
      historyFile: '/data/telemetry-history.jsonl',
      sources: {
        aws: { endpoint: 'http://169.254.169.254', tokenTtlS: 21_600 },
        gcp: { endpoint: 'http://metadata.google.internal', watchTimeoutS: 60 },
        azure: { endpoint: 'http://169.254.169.254', vmName: 'vm1' },
      },
    });
  });

  it.each([
    [{ enabled: true }, 'telemetry.forecasterAddress'],
    [{ forecasterAddress: 'f:1', interval: 'often' }, 'telemetry.interval'],
    [{ forecasterAddress: 'f:1', sources: { aws: { endpont: 'x' } } }, 'telemetry.sources.aws.endpont'],
    [{ forecasterAddress: 'f:1', sources: { gcp: { endpoint: 'metadata' } } }, 'telemetry.sources.gcp.endpoint'],
    [{ forecasterAddress: 'f:1', reconnectMin: '10s', reconnectMax: '1s' }, 'telemetry.reconnectMax'],
    [{ forecasterAddress: 'f:1', sources: { oracle: {} } }, 'telemetry.sources.oracle'],
  ])('names the field at fault: %j → %s', (raw, field) => {
    expect(() => parseTelemetryConfig(raw, '/d')).toThrow(
      expect.objectContaining({ code: 'NC_CONFIG_INVALID', field }) as Error,
    );
  });
});
