import { parseConfig } from '../../../forecaster/src/config';

const codeAndField = (fn: () => unknown): { code?: string; field?: string } => {
  try {
    fn();
  } catch (err) {
    const e = err as { code?: string; context?: { field?: string }; field?: string };
    return { code: e.code, field: e.context?.field ?? e.field };
  }
  throw new Error('expected a ConfigError');
};

describe('forecaster config: model registry, recorded trace, retrain timer (issue 6)', () => {
  it('is off by default: nothing recorded, no registry, no retrain', () => {
    expect(parseConfig({ modelDir: '/m' })).toMatchObject({
      modelDir: '/m',
      modelRegistry: '',
      dataDir: '',
      traceMaxBytes: 64 * 1024 * 1024,
      retrainIntervalMs: 0,
      retrainMinSpanMs: 12 * 3_600_000,
      retrainMinPreemptions: 10,
    });
  });

  it('retrains hourly by default in local mode with a registry and a data dir, never by default in Nomad mode', () => {
    const local = { modelRegistry: '/reg', dataDir: '/data', controllerAddress: 'http://127.0.0.1:1' };
    expect(parseConfig(local).retrainIntervalMs).toBe(3_600_000);
    expect(parseConfig({ ...local, retrainInterval: '30m' }).retrainIntervalMs).toBe(1_800_000);
    expect(parseConfig({ ...local, retrainInterval: 0 }).retrainIntervalMs).toBe(0);
    const nomad = { modelRegistry: '/reg', dataDir: '/data', nomadAddress: 'http://127.0.0.1:4646' };
    expect(parseConfig(nomad).retrainIntervalMs).toBe(0);
  });

  it('serves from a registry alone; the result is frozen', () => {
    const config = parseConfig({ modelRegistry: '/reg', traceMaxBytes: '8MiB', retrainMinSpan: '7h' });
    expect(config).toMatchObject({ modelDir: '', modelRegistry: '/reg', traceMaxBytes: 8 * 1024 * 1024 });
    expect(config.retrainMinSpanMs).toBe(7 * 3_600_000);
    expect(Object.isFrozen(config)).toBe(true);
  });

  it.each([
    [{}, 'modelDir'],
    [{ modelDir: '/m', retrainInterval: '1h' }, 'retrainInterval'],
    [{ modelDir: '/m', modelRegistry: '/reg', retrainInterval: '1h' }, 'retrainInterval'],
    [{ modelDir: '/m', dataDir: '/d', modelRegistry: '/reg', retrainInterval: '10s' }, 'retrainInterval'],
    [{ modelDir: '/m', dataDir: '/d', modelRegistry: '/reg', retrainInterval: 'hourly' }, 'retrainInterval'],
    [{ modelDir: '/m', traceMaxBytes: '1KiB' }, 'traceMaxBytes'],
    [{ modelDir: '/m', traceMaxBytes: 'big' }, 'traceMaxBytes'],
    [{ modelDir: '/m', retrainMinPreemptions: 0 }, 'retrainMinPreemptions'],
    [{ modelDir: '/m', modelRegistry: 7 }, 'modelRegistry'],
  ])('refuses %j naming %s', (raw, field) => {
    expect(codeAndField(() => parseConfig(raw))).toEqual({ code: 'NC_CONFIG_INVALID', field });
  });
});
