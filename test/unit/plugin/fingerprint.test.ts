import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { status } from '@grpc/grpc-js';
import { BasePlugin, PLUGIN_VERSION } from '../../../plugin/src/base-plugin';
import { SidecarError } from '../../../common/sidecar-api/errors';
import { Fingerprinter } from '../../../plugin/src/fingerprint';
import { PluginType } from '../../../proto/gen/nomad/plugins/base/proto/base';
import { FingerprintResponse_HealthState as Health } from '../../../proto/gen/nomad/plugins/drivers/proto/driver';
import type { FingerprintResponse } from '../../../proto/gen/nomad/plugins/drivers/proto/driver';
import { FakeClock } from '../../fakes/fake-clock';
import { FakeSidecarCluster, type FakeSidecarApi } from '../../fakes/fake-sidecar-api';
import { pluginConfig, rig, silent, thrownCode } from './rig';

describe('fingerprint', () => {
  it("is healthy with the sidecar's features as driver.chain.* attributes", async () => {
    const r = rig();
    const [first] = await take(r, 1);
    expect(first?.health).toBe(Health.HEALTHY);
    expect(first?.attributes['driver.chain.transfer_address']?.value).toEqual({
      $case: 'stringVal',
      stringVal: '198.18.0.2:7451',
    });
    expect(first?.attributes['driver.chain.lazy_pages']?.value).toEqual({ $case: 'boolVal', boolVal: true });
    expect(first?.attributes['driver.chain.version']?.value).toEqual({ $case: 'stringVal', stringVal: PLUGIN_VERSION });
  });

  it("is unhealthy with the sidecar's reason when CRIU or runc is unusable, and when it is unreachable", async () => {
    const r = rig();
    r.sidecar.featuresResponse = { ...r.sidecar.featuresResponse, healthy: false, reason: 'runc not found' };
    expect((await take(r, 1))[0]).toMatchObject({ health: Health.UNHEALTHY, healthDescription: 'runc not found' });
    r.sidecar.failNext('features', new SidecarError('NC_SIDECAR_UNREACHABLE', 'connect ENOENT', status.UNAVAILABLE));
    const [down] = await take(r, 1);
    expect(down?.health).toBe(Health.UNHEALTHY);
    expect(down?.healthDescription).toBe('sidecar unreachable at /run/nc/sidecar.sock: connect ENOENT');
  });

  it('is unhealthy before SetConfig', async () => {
    const base = new BasePlugin(
      PLUGIN_VERSION,
      () => ({
        config: {} as never,
        sidecar: new FakeSidecarCluster().add('node-a', '198.18.0.2:7451'),
        lookup: undefined,
      }),
      silent,
    );
    const fingerprint = await new Fingerprinter(base, PLUGIN_VERSION, new FakeClock(), silent).check();
    expect(fingerprint.health).toBe(Health.UNHEALTHY);
    expect(fingerprint.healthDescription).toContain('SetConfig not called');
  });

  it('sends the first fingerprint at once and later ones only on change', async () => {
    const r = rig();
    const stop = new AbortController();
    const seen: Health[] = [];
    let checks = 0;
    const features = r.sidecar.features.bind(r.sidecar);
    r.sidecar.features = async () => {
      checks += 1;
      if (checks === 4)
        r.sidecar.featuresResponse = { ...r.sidecar.featuresResponse, healthy: false, reason: 'criu gone' };
      return features();
    };
    for await (const fingerprint of r.driver.fingerprint(stop.signal)) {
      seen.push(fingerprint.health);
      if (seen.length === 2) stop.abort();
    }
    expect(seen).toEqual([Health.HEALTHY, Health.UNHEALTHY]);
    expect(checks).toBe(4);
    // Checked every fingerprint_period (15 s by default).
    expect(r.clock.now()).toBeGreaterThanOrEqual(1_700_000_000_000 + 3 * 15_000);
  });
});

describe('base plugin', () => {
  it("identifies itself as Nomad's loader requires", () => {
    const info = rig().base.pluginInfo();
    expect(info).toEqual({
      type: PluginType.DRIVER,
      pluginApiVersions: ['v0.1.0'],
      pluginVersion: PLUGIN_VERSION,
      name: 'chain',
    });
    const pkg = JSON.parse(readFileSync(resolve(__dirname, '../../../package.json'), 'utf8')) as { version: string };
    expect(PLUGIN_VERSION).toBe(pkg.version);
  });

  it('replaces (and closes) its sidecar client on every SetConfig, keeping the old one on a bad config', () => {
    const made: FakeSidecarApi[] = [];
    const base = new BasePlugin(
      PLUGIN_VERSION,
      (config) => {
        const sidecar = new FakeSidecarCluster().add('node-a', '198.18.0.2:7451');
        made.push(sidecar);
        return { config, sidecar, lookup: undefined };
      },
      silent,
    );
    expect(thrownCode(() => base.current())).toBe('NC_PLUGIN_NOT_CONFIGURED');
    const request = { msgpackConfig: Buffer.from(pluginConfig()), nomadConfig: undefined, pluginApiVersion: 'v0.1.0' };
    base.setConfig(request);
    base.setConfig(request);
    expect(made.map((s) => s.closed)).toEqual([true, false]);
    expect(
      thrownCode(() =>
        base.setConfig({ ...request, msgpackConfig: Buffer.from(pluginConfig({ migration_mode: 'x' })) }),
      ),
    ).toBe('NC_PLUGIN_CONFIG_INVALID');
    expect(base.current().sidecar).toBe(made[1]);
  });
});

async function take(r: ReturnType<typeof rig>, n: number): Promise<FingerprintResponse[]> {
  const stop = new AbortController();
  const out: FingerprintResponse[] = [];
  for await (const fingerprint of r.driver.fingerprint(stop.signal)) {
    out.push(fingerprint);
    if (out.length === n) stop.abort();
  }
  return out;
}
