import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { criuTlsOptions } from '../../../../sidecar/src/checkpoint/criu';
import { writeBundle } from '../../../../sidecar/src/runtime/bundle';

const TLS = { caFile: '/tls/ca.crt', certFile: '/tls/node1.crt', keyFile: '/tls/node1.key' };

describe("CRIU's TLS for the lazy page stream", () => {
  it('requires a CA-signed peer certificate on both ends', () => {
    expect(criuTlsOptions(TLS)).toEqual([
      ['tls'],
      ['tls-cacert', '/tls/ca.crt'],
      ['tls-cert', '/tls/node1.crt'],
      ['tls-key', '/tls/node1.key'],
      ['tls-no-cn-verify'],
    ]);
  });

  it("puts them in the task's CRIU options, which runc hands to every dump of the task", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nc-bundle-'));
    const criuConfigFile = join(dir, 'criu.conf');
    const spec = {
      argv: ['/bin/true'],
      env: {},
      cwd: '/',
      allocDir: '',
      localDir: '',
      secretsDir: '',
      memoryLimitBytes: 0,
      cpuShares: 0,
      stdoutPath: '',
      stderrPath: '',
      networkNamespace: '',
      rootfs: dir,
      binds: {},
      user: '',
    };
    await writeBundle(join(dir, 'bundle'), {
      spec,
      cgroupsPath: '/t',
      defaultNetworkNamespace: '',
      criuConfigFile,
      hostname: 't',
      criuTls: TLS,
    });
    expect(readFileSync(criuConfigFile, 'utf8').trim().split('\n')).toEqual([
      'tcp-close',
      'file-locks',
      'tls',
      'tls-cacert /tls/ca.crt',
      'tls-cert /tls/node1.crt',
      'tls-key /tls/node1.key',
      'tls-no-cn-verify',
    ]);
    await writeBundle(join(dir, 'plain'), {
      spec,
      cgroupsPath: '/t',
      defaultNetworkNamespace: '',
      criuConfigFile,
      hostname: 't',
    });
    expect(readFileSync(criuConfigFile, 'utf8').trim().split('\n')).toEqual(['tcp-close', 'file-locks']);
  });
});
