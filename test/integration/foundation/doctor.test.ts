import { readFileSync } from 'node:fs';
import { run } from '../../../common/exec';
import { hasSysResource } from '../../../sidecar/src/runtime/user-namespace';

const doctor = (env: NodeJS.ProcessEnv) =>
  run([process.execPath, '-r', './scripts/register.js', 'scripts/doctor.ts'], {
    env,
    allowFailure: true,
    timeoutMs: 120_000,
  });

describe('npm run doctor (issue #3)', () => {
  it('passes on a machine set up by npm run setup, one line per component', async () => {
    const result = await doctor(process.env);
    expect(result.stdout).toContain('All required components are usable.');
    expect(result.code).toBe(0);
    for (const item of [
      'criu',
      'runc',
      'haproxy',
      'iptables',
      'network namespaces',
      'user namespaces',
      'onnxruntime-node',
      'python venv',
      'go',
    ]) {
      expect(result.stdout).toMatch(new RegExp(`^ok\\s+${item}\\s`, 'm'));
    }
    expect(result.stdout).toMatch(/^(ok|info)\s+criu soft-dirty\s/m);
    const held = hasSysResource(readFileSync('/proc/self/status', 'utf8'));
    expect(result.stdout).toMatch(held ? /^ok\s+CAP_SYS_RESOURCE\s+held/m : /^info\s+CAP_SYS_RESOURCE\s+not held/m);
  });

  it('fails naming CRIU when CRIU_BIN points at a missing file', async () => {
    const result = await doctor({ ...process.env, CRIU_BIN: '/nonexistent/criu' });
    expect(result.code).toBe(1);
    expect(result.stdout).toMatch(/^FAIL\s+criu\s+.*CRIU_BIN=\/nonexistent\/criu is not an executable file/m);
    expect(result.stdout).toContain('unusable: criu');
  });

  it('fails naming HAProxy when HAPROXY_BIN points at a missing file', async () => {
    const result = await doctor({ ...process.env, HAPROXY_BIN: '/nonexistent/haproxy' });
    expect(result.code).toBe(1);
    expect(result.stdout).toMatch(/^FAIL\s+haproxy\s/m);
  });
});
