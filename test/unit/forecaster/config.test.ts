import { parseConfig, rawOptionsFrom, ruleFor } from '../../../forecaster/src/config';

describe('forecaster parseConfig', () => {
  it('fills defaults, converts durations and freezes the result', () => {
    const config = parseConfig({ modelDir: '/models/current' });
    expect(config).toMatchObject({
      telemetryPort: 7460,
      httpPort: 7461,
      tickMs: 10_000,
      maxNodes: 20_000,
      act: true,
      nomadAddress: '',
    });
    expect(config.policy.defaults).toEqual({
      enterThreshold: 0.7,
      exitThreshold: 0.5,
      drainThreshold: 0.7,
      thresholdsFrom: '',
      cooldownMs: 600_000,
      drainAfterMs: 120_000,
      drainDeadlineMs: 600_000,
    });
    expect(Object.isFrozen(config.policy.defaults)).toBe(true);
  });

  it('resolves pool and class overrides on top of the defaults', () => {
    const { policy } = parseConfig({
      modelDir: '/m',
      policy: {
        enterThreshold: 0.8,
        exitThreshold: 0.6,
        pools: { spot: { drainAfter: '30s' } },
        classes: { gpu: { enterThreshold: 0.9 } },
      },
    });
    expect(ruleFor(policy, 'spot', '')).toMatchObject({ enterThreshold: 0.8, drainAfterMs: 30_000 });
    expect(ruleFor(policy, 'spot', 'gpu')).toMatchObject({
      enterThreshold: 0.9,
      exitThreshold: 0.6,
      drainAfterMs: 120_000,
    });
    expect(ruleFor(policy, 'other', '')).toBe(policy.defaults);
  });

  it('takes a drain threshold (the pre-warn level when unset), and records which level set the thresholds', () => {
    const unset = parseConfig({ modelDir: '/m', policy: { drainAfter: '1m', pools: { spot: { cooldown: '1m' } } } });
    expect(unset.policy.defaults).toMatchObject({ drainThreshold: 0.7, thresholdsFrom: '' });
    expect(unset.policy.pools.spot).toMatchObject({ thresholdsFrom: '' });
    const { policy } = parseConfig({
      modelDir: '/m',
      policy: {
        enterThreshold: 0.4,
        exitThreshold: 0.2,
        pools: { spot: { enterThreshold: 0.6 }, quiet: { drainAfter: '1m' } },
        classes: { gpu: { drainThreshold: 0.9 } },
      },
    });
    expect(policy.defaults).toMatchObject({ enterThreshold: 0.4, drainThreshold: 0.4, thresholdsFrom: 'policy' });
    // Unset everywhere, the drain level follows each rule's own pre-warn level.
    expect(policy.pools.spot).toMatchObject({ drainThreshold: 0.6, thresholdsFrom: 'policy.pools.spot' });
    expect(policy.pools.quiet).toMatchObject({ drainThreshold: 0.4, thresholdsFrom: 'policy' });
    expect(policy.classes.gpu).toMatchObject({
      enterThreshold: 0.4,
      drainThreshold: 0.9,
      thresholdsFrom: 'policy.classes.gpu',
    });
    // Set once, it is inherited.
    const inherited = parseConfig({
      modelDir: '/m',
      policy: { drainThreshold: 0.9, pools: { spot: { enterThreshold: 0.8 } } },
    });
    expect(inherited.policy.pools.spot).toMatchObject({ enterThreshold: 0.8, drainThreshold: 0.9 });
  });

  it.each([
    [{}, 'modelDir'],
    [{ modelDir: '/m', tick: 'soon' }, 'tick'],
    [{ modelDir: '/m', policy: { exitThreshold: 0.9 } }, 'policy.exitThreshold'],
    [{ modelDir: '/m', policy: { drainThreshold: 0.6 } }, 'policy.drainThreshold'],
    [{ modelDir: '/m', policy: { drainThreshold: 1.5 } }, 'policy.drainThreshold'],
    [
      { modelDir: '/m', policy: { drainThreshold: 0.8, pools: { spot: { enterThreshold: 0.85 } } } },
      'policy.pools.spot.drainThreshold',
    ],
    [{ modelDir: '/m', policy: { pools: { spot: { enterThreshold: 2 } } } }, 'policy.pools.spot.enterThreshold'],
    [{ modelDir: '/m', policy: { classes: { gpu: { drainAftr: '1m' } } } }, 'policy.classes.gpu.drainAftr'],
    [{ modelDir: '/m', nomadAddress: 'nomad:4646' }, 'nomadAddress'],
    [{ modelDir: '/m', telemetryPort: 70000 }, 'telemetryPort'],
    [{ modelDir: '/m', typo: 1 }, 'typo'],
  ])('names the field at fault: %j → %s', (raw, field) => {
    expect(() => parseConfig(raw)).toThrow(expect.objectContaining({ code: 'NC_CONFIG_INVALID', field }) as Error);
  });

  it('takes a trace replay time scale with both origins, and the system clock by default', () => {
    expect(parseConfig({ modelDir: '/m' })).toMatchObject({ timeScale: 1, timeOrigin: 0, timeOriginReal: 0 });
    expect(
      parseConfig({ modelDir: '/m', timeScale: 120, timeOrigin: 1_600_000_000_000, timeOriginReal: 1_764_000_000_000 }),
    ).toMatchObject({ timeScale: 120, timeOrigin: 1_600_000_000_000, timeOriginReal: 1_764_000_000_000 });
    const spans = [{ fromMs: 10, toMs: 20, scale: 5 }];
    expect(
      parseConfig({ modelDir: '/m', timeScale: 120, timeOrigin: 1, timeOriginReal: 1, timeSpans: spans }),
    ).toMatchObject({ timeSpans: spans });
  });

  it.each([
    [{ modelDir: '/m', timeScale: 0, timeOrigin: 0, timeOriginReal: 0 }, 'timeScale'],
    [{ modelDir: '/m', timeScale: 'fast' }, 'timeScale'],
    [{ modelDir: '/m', timeScale: 60 }, 'timeOrigin'],
    [{ modelDir: '/m', timeScale: 60, timeOrigin: -1, timeOriginReal: 0 }, 'timeOrigin'],
    [{ modelDir: '/m', timeScale: 60, timeOrigin: 0, timeOriginReal: 1.5 }, 'timeOriginReal'],
    [{ modelDir: '/m', timeSpans: [{ fromMs: 0, toMs: 1, scale: 1 }] }, 'timeSpans'],
    [{ modelDir: '/m', timeScale: 60, timeOrigin: 0, timeOriginReal: 0, timeSpans: {} }, 'timeSpans'],
    [
      {
        modelDir: '/m',
        timeScale: 60,
        timeOrigin: 0,
        timeOriginReal: 0,
        timeSpans: [{ fromMs: 5, toMs: 5, scale: 1 }],
      },
      'timeSpans[0].toMs',
    ],
    [
      {
        modelDir: '/m',
        timeScale: 60,
        timeOrigin: 0,
        timeOriginReal: 0,
        timeSpans: [
          { fromMs: 0, toMs: 10, scale: 1 },
          { fromMs: 5, toMs: 20, scale: 1 },
        ],
      },
      'timeSpans[1].fromMs',
    ],
    [
      {
        modelDir: '/m',
        timeScale: 60,
        timeOrigin: 0,
        timeOriginReal: 0,
        timeSpans: [{ fromMs: 0, toMs: 1, scale: 0 }],
      },
      'timeSpans[0].scale',
    ],
  ])('names the time field at fault: %j → %s', (raw, field) => {
    expect(() => parseConfig(raw)).toThrow(expect.objectContaining({ code: 'NC_CONFIG_INVALID', field }) as Error);
  });

  it('reads a JSON file overlaid by environment variables', () => {
    const raw = rawOptionsFrom(
      { NOMAD_ADDR: 'http://127.0.0.1:4646', NOMAD_CHAIN_FORECASTER_TICK: '5s' },
      '{"modelDir":"/m","tick":"1m"}',
    );
    expect(parseConfig(raw)).toMatchObject({ modelDir: '/m', tickMs: 5000, nomadAddress: 'http://127.0.0.1:4646' });
    expect(() => rawOptionsFrom({}, '{')).toThrow(expect.objectContaining({ field: '--config' }) as Error);
  });

  it("takes Nomad's CA from NOMAD_CACERT, as Nomad's CLI does (an https:// Nomad with its own CA)", () => {
    expect(parseConfig({ modelDir: '/m' }).nomadCaFile).toBe('');
    const raw = rawOptionsFrom({ NOMAD_ADDR: 'https://127.0.0.1:4646', NOMAD_CACERT: '/etc/nomad/ca.pem' }, undefined);
    expect(parseConfig({ ...raw, modelDir: '/m' })).toMatchObject({
      nomadAddress: 'https://127.0.0.1:4646',
      nomadCaFile: '/etc/nomad/ca.pem',
    });
  });

  it('takes the sidecar TLS files for pre-staging from the env, all three or none', () => {
    expect(parseConfig({ modelDir: '/m' }).sidecarTls).toEqual({ caFile: '', certFile: '', keyFile: '' });
    const raw = rawOptionsFrom(
      {
        NOMAD_CHAIN_FORECASTER_SIDECAR_TLS_CA: '/tls/ca.crt',
        NOMAD_CHAIN_FORECASTER_SIDECAR_TLS_CERT: '/tls/f.crt',
        NOMAD_CHAIN_FORECASTER_SIDECAR_TLS_KEY: '/tls/f.key',
      },
      undefined,
    );
    expect(parseConfig({ ...raw, modelDir: '/m' }).sidecarTls).toEqual({
      caFile: '/tls/ca.crt',
      certFile: '/tls/f.crt',
      keyFile: '/tls/f.key',
    });
    expect(() => parseConfig({ modelDir: '/m', sidecarTlsCaFile: '/tls/ca.crt' })).toThrow(
      expect.objectContaining({ field: 'sidecarTlsCaFile' }) as Error,
    );
  });
});
