import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { TaskSpec } from '../../../proto/gen/chain/v1/sidecar';
import type { HarnessNode } from './node-harness';
import { eventually, identity, makeNode, teardownNode } from './node-harness';
import { TestNetwork } from '../../harness/test-network';

const COUNTER = 'i=0; while true; do i=$((i+1)); echo $i > /alloc/counter; echo "tick $i"; sleep 0.1; done';

// Real runc and CRIU on a loaded 2-core machine: generous, never a performance assertion.
jest.setTimeout(300_000);

describe('task runtime (real runc)', () => {
  let net: TestNetwork;
  let node: HarnessNode;

  beforeAll(async () => {
    net = TestNetwork.create(1);
    node = await makeNode('rt', net.node(0), new Map());
  });

  afterAll(async () => {
    await teardownNode(node);
    net?.destroy();
  });

  it('starts a shell loop, inspects, reads stats and logs, execs inside it and stops it', async () => {
    const alloc = await node.allocDir('counter');
    const spec = TaskSpec.fromPartial({ argv: ['/bin/sh', '-c', COUNTER], allocDir: alloc });
    const started = await node.runtime.start(identity('counter'), spec);
    expect(started.pid).toBeGreaterThan(0);

    const view = await node.runtime.inspect('counter');
    expect(view.record.phase).toBe('running');
    expect(view.pid).toBe(started.pid);

    const counter = await eventually(async () => {
      const n = Number(await readFile(join(alloc, 'counter'), 'utf8'));
      if (!(n >= 3)) throw new Error(`counter at ${n}`);
      return n;
    });
    expect(counter).toBeGreaterThanOrEqual(3);
    const log = await readFile(join(view.dir, 'stdout.log'), 'utf8');
    expect(log).toMatch(/^tick 1\ntick 2\n/);

    const stats = await node.runtime.stats('counter');
    expect(stats.memoryUsageBytes).toBeGreaterThan(0);
    expect(stats.pids).toContain(started.pid);
    expect(stats.cpuTotalNs).toBeGreaterThan(0);

    const exec = await node.runtime.exec(
      'counter',
      ['/bin/sh', '-c', 'cat /alloc/counter; echo err >&2; exit 7'],
      20_000,
    );
    expect(Number(String(exec.stdout))).toBeGreaterThanOrEqual(counter);
    expect(String(exec.stderr)).toBe('err\n');
    expect(exec.exitCode).toBe(7);

    // The shell is pid 1 of its namespace and ignores SIGTERM: stop must escalate to SIGKILL.
    const stopped = await node.runtime.stop('counter', 'SIGTERM', 1500);
    expect(stopped.phase).toBe('exited');
    expect(stopped.exit).toEqual({ exitCode: 137, signal: 9, oomKilled: false });
    expect(await node.runc.state(stopped.containerId)).toBeUndefined();
  });

  it('delivers signals and reports the exit code a task chose', async () => {
    const spec = TaskSpec.fromPartial({
      argv: ['/bin/sh', '-c', 'trap "exit 3" USR1; trap "exit 4" TERM; while true; do sleep 0.1; done'],
    });
    await node.runtime.start(identity('signals'), spec);
    const exited = node.runtime.wait('signals');
    await node.runtime.signal('signals', 'SIGUSR1');
    expect(await exited).toEqual({ exitCode: 3, signal: 0, oomKilled: false });
    await expect(node.runtime.signal('signals', 'SIGTERM')).rejects.toMatchObject({ code: 'NC_TASK_NOT_RUNNING' });
  });

  it('joins the node network namespace', async () => {
    const spec = TaskSpec.fromPartial({ argv: ['/bin/sleep', '60'] });
    await node.runtime.start(identity('netns'), spec);
    const out = await node.runtime.exec('netns', ['/usr/sbin/ip', '-4', '-o', 'addr', 'show', 'eth0'], 20_000);
    expect(String(out.stdout)).toContain(net.node(0).address);
    await node.runtime.stop('netns', 'SIGKILL', 5000);
  });

  it('fails a start with a coded error when the program does not exist, leaving nothing behind', async () => {
    const spec = TaskSpec.fromPartial({ argv: ['/no/such/program'] });
    await expect(node.runtime.start(identity('missing'), spec)).rejects.toMatchObject({
      code: 'NC_TASK_START_FAILED',
      message: expect.stringContaining('/no/such/program') as unknown,
    });
    await expect(node.runtime.inspect('missing')).rejects.toMatchObject({ code: 'NC_TASK_NOT_FOUND' });
  });

  it('rejects a bad spec and unknown tasks with coded errors', async () => {
    await expect(node.runtime.start(identity('bad'), TaskSpec.fromPartial({ argv: [] }))).rejects.toMatchObject({
      code: 'NC_TASK_SPEC_INVALID',
    });
    await expect(
      node.runtime.start(identity('bad2'), TaskSpec.fromPartial({ argv: ['/bin/true'], allocDir: 'relative' })),
    ).rejects.toMatchObject({ code: 'NC_TASK_SPEC_INVALID' });
    await expect(node.runtime.stats('nobody')).rejects.toMatchObject({ code: 'NC_TASK_NOT_FOUND' });
  });
});
