import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { resolveBinary, type BinaryName } from '../common/binaries';
import { errorMessage } from '../common/errors';
import { run } from '../common/exec';
import { DEFAULT_ID_MAPPING, probeUserNamespaceSupport } from '../sidecar/src/runtime/user-namespace';

/**
 * Checks this node's stack without changing it (a namespace made to prove namespaces work is removed at
 * once). One line per item; exit 1 when a required item fails. Operators run it on every node.
 */
type Status = 'ok' | 'FAIL' | 'warn' | 'info';

interface Line {
  readonly status: Status;
  readonly item: string;
  readonly detail: string;
}

const REPO = resolve(__dirname, '..');
const CRIU_MIN = [4, 2];

function versionAtLeast(version: string, min: readonly number[]): boolean {
  const parts = version.split('.').map(Number);
  for (let i = 0; i < min.length; i++) {
    const have = parts[i] ?? 0;
    const want = min[i] ?? 0;
    if (have !== want) return have > want;
  }
  return true;
}

async function binaryVersion(
  name: BinaryName,
  args: readonly string[],
  pattern: RegExp,
): Promise<{ path: string; version: string }> {
  const path = resolveBinary(name);
  const out = await run([path, ...args], { allowFailure: true, timeoutMs: 20_000 });
  const match = pattern.exec(out.stdout + out.stderr);
  if (match?.[1] === undefined) throw new Error(`${path} ${args.join(' ')} printed no version`);
  return { path, version: match[1] };
}

async function checkCriu(lines: Line[]): Promise<void> {
  try {
    const { path, version } = await binaryVersion('criu', ['--version'], /Version:\s*(\S+)/);
    if (!versionAtLeast(version, CRIU_MIN)) {
      lines.push({
        status: 'FAIL',
        item: 'criu',
        detail: `${version} at ${path} is older than ${CRIU_MIN.join('.')} (cannot dump TCP/UDP sockets on kernels >= 6.16)`,
      });
      return;
    }
    const check = await run([path, 'check'], { allowFailure: true, timeoutMs: 60_000 });
    if (check.code !== 0) {
      lines.push({
        status: 'FAIL',
        item: 'criu',
        detail: `${version} at ${path}: criu check failed: ${(check.stderr || check.stdout).trim().split('\n').pop() ?? ''}`,
      });
      return;
    }
    lines.push({ status: 'ok', item: 'criu', detail: `${version} (${path}), criu check passes` });
    const feature = async (name: string): Promise<boolean> =>
      (await run([path, 'check', '--feature', name], { allowFailure: true, timeoutMs: 30_000 })).code === 0;
    const softDirty = await feature('mem_dirty_track');
    lines.push({
      status: softDirty ? 'ok' : 'info',
      item: 'criu soft-dirty',
      detail: softDirty
        ? 'available: pre-copy migration'
        : 'unavailable on this kernel: pre-copy falls back to stop-and-copy',
    });
    const uffd = (await feature('uffd')) && (await feature('uffd-noncoop'));
    lines.push({
      status: uffd ? 'ok' : 'info',
      item: 'criu userfaultfd',
      detail: uffd ? 'available: lazy (post-copy) migration' : 'unavailable: lazy migration disabled',
    });
  } catch (err) {
    lines.push({ status: 'FAIL', item: 'criu', detail: errorMessage(err) });
  }
}

async function checkBinary(lines: Line[], name: BinaryName, args: readonly string[], pattern: RegExp): Promise<void> {
  try {
    const { path, version } = await binaryVersion(name, args, pattern);
    lines.push({ status: 'ok', item: name, detail: `${version} (${path})` });
  } catch (err) {
    lines.push({ status: 'FAIL', item: name, detail: errorMessage(err) });
  }
}

async function checkNamespaces(lines: Line[]): Promise<void> {
  const name = `nc-doctor-${process.pid}`;
  try {
    const ip = resolveBinary('ip');
    await run([ip, 'netns', 'add', name]);
    await run([ip, 'netns', 'exec', name, ip, 'link', 'set', 'lo', 'up']);
    lines.push({ status: 'ok', item: 'network namespaces', detail: 'create, configure and delete work' });
  } catch (err) {
    lines.push({ status: 'FAIL', item: 'network namespaces', detail: errorMessage(err) });
  } finally {
    await run(['ip', 'netns', 'del', name], { allowFailure: true });
  }
}

/**
 * CRIU reads every task process's rlimits; without CAP_SYS_RESOURCE root may not read those of another uid,
 * which a task's own user namespace (owned by root) makes possible again, so the two lines say together what moves.
 */
async function checkUserIds(lines: Line[]): Promise<void> {
  const { userNamespaces, userNamespacesError, sysResource } = await probeUserNamespaceSupport();
  const { hostId, size } = DEFAULT_ID_MAPPING;
  lines.push(
    userNamespaces
      ? {
          status: 'ok',
          item: 'user namespaces',
          detail: `usable: each task runs in its own (0 -> ${hostId}, ${size} ids)`,
        }
      : {
          status: sysResource ? 'warn' : 'FAIL',
          item: 'user namespaces',
          detail: `unshare --user fails (${userNamespacesError ?? ''}): tasks cannot run in their own`,
        },
  );
  lines.push({
    status: sysResource ? 'ok' : userNamespaces ? 'info' : 'warn',
    item: 'CAP_SYS_RESOURCE',
    detail: sysResource
      ? 'held: CRIU dumps tasks of any uid, with or without a user namespace'
      : userNamespaces
        ? 'not held: a task running as another uid dumps only inside its own user namespace (the default), so a task started without one moves only if all its processes run as root'
        : 'not held and no user namespaces: only tasks whose every process runs as root can move',
  });
}

function checkPipeSize(lines: Line[]): void {
  const size = Number(readFileSync('/proc/sys/fs/pipe-max-size', 'utf8'));
  lines.push(
    size >= 4_194_304
      ? { status: 'ok', item: 'fs.pipe-max-size', detail: String(size) }
      : {
          status: 'warn',
          item: 'fs.pipe-max-size',
          detail: `${size}: lazy migration's page server needs >= 4194304 (npm run setup sets it)`,
        },
  );
}

async function checkOnnx(lines: Line[]): Promise<void> {
  try {
    const ort = await import('onnxruntime-node');
    const version = (
      JSON.parse(readFileSync(require.resolve('onnxruntime-node/package.json'), 'utf8')) as { version: string }
    ).version;
    lines.push({
      status: 'ok',
      item: 'onnxruntime-node',
      detail: `${version} loads (${ort
        .listSupportedBackends()
        .map((b) => b.name)
        .join(', ')})`,
    });
  } catch (err) {
    lines.push({ status: 'FAIL', item: 'onnxruntime-node', detail: errorMessage(err) });
  }
}

async function checkPython(lines: Line[]): Promise<void> {
  const python = join(REPO, '.venv/bin/python');
  if (!existsSync(python)) {
    lines.push({ status: 'FAIL', item: 'python venv', detail: `${python} missing (run npm run setup)` });
    return;
  }
  const probe = await run(
    [
      python,
      '-c',
      'import sys, lightgbm, sklearn, onnx; print(sys.version.split()[0], "lightgbm", lightgbm.__version__, "scikit-learn", sklearn.__version__)',
    ],
    {
      allowFailure: true,
      timeoutMs: 60_000,
    },
  );
  lines.push(
    probe.code === 0
      ? { status: 'ok', item: 'python venv', detail: `${probe.stdout.trim()} (${python})` }
      : {
          status: 'FAIL',
          item: 'python venv',
          detail: `training libraries do not import: ${probe.stderr.trim().split('\n').pop() ?? ''}`,
        },
  );
}

/** Nomad and Consul are what the real-Nomad tier of npm test runs on; npm run setup builds both. */
async function checkHashicorp(lines: Line[]): Promise<void> {
  await checkBinary(lines, 'nomad', ['version'], /Nomad v(\S+)/);
  await checkBinary(lines, 'consul', ['version'], /Consul v(\S+)/);
}

async function main(): Promise<number> {
  const lines: Line[] = [];
  await checkCriu(lines);
  checkPipeSize(lines);
  await checkBinary(lines, 'runc', ['--version'], /runc version (\S+)/);
  await checkBinary(lines, 'haproxy', ['-v'], /HAProxy version (\S+)/);
  await checkBinary(lines, 'iptables', ['--version'], /iptables (v\S+)/);
  await checkBinary(lines, 'ip', ['-V'], /(iproute2-[^,\s]+)/);
  await checkBinary(lines, 'setfacl', ['--version'], /setfacl (\S+)/);
  await checkNamespaces(lines);
  await checkUserIds(lines);
  await checkOnnx(lines);
  await checkPython(lines);
  await checkBinary(lines, 'go', ['version'], /go version (go\S+)/);
  await checkHashicorp(lines);
  for (const line of lines) process.stdout.write(`${line.status.padEnd(5)} ${line.item.padEnd(20)} ${line.detail}\n`);
  const failed = lines.filter((l) => l.status === 'FAIL');
  process.stdout.write(
    failed.length === 0
      ? '\nAll required components are usable.\n'
      : `\n${failed.length} required component(s) unusable: ${failed.map((l) => l.item).join(', ')}\n`,
  );
  return failed.length === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`doctor: ${errorMessage(err)}\n`);
    process.exit(2);
  },
);
