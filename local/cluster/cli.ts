import { resolve } from 'node:path';
import { LocalCluster, describe, destroyCluster, isOrphaned } from './cluster';
import { ClusterRegistry } from './registry';

const USAGE = `Usage: npm run cluster -- <command> [options]

Commands:
  up [-nodes N] [-services a,b]   Start a local cluster (default 3 nodes, one service "app") and leave it running
  status                          List the local clusters on this machine
  down [ID]                       Stop a cluster (default: every cluster whose owner is gone, crashed runs included)
  drain NODE [-id ID]             Drain a node of the cluster npm start runs: its chained tasks move with their state
  eligibility NODE -enable|-disable [-id ID]
                                  Mark a node eligible or ineligible for new work
  job run FILE [-id ID]           Run a Nomad job file's driver = "chain" tasks on the cluster npm start runs
  job status [NAME] [-id ID]      The jobs it runs: each service's node, address and HAProxy URL
  job stop NAME [-id ID]          Stop a job's tasks
`;

interface JobStatus {
  readonly job: string;
  readonly file: string;
  readonly ignored: readonly string[];
  readonly services: readonly {
    service: string;
    node: string;
    address: string;
    taskId: string;
    routerUrl: string;
  }[];
}

function printJob(status: JobStatus): void {
  process.stdout.write(`Job "${status.job}" (${status.file})\n`);
  for (const s of status.services)
    process.stdout.write(
      `    ${s.service.padEnd(10)} ${(s.node || 'not placed').padEnd(7)} ${s.address.padEnd(20)} ${s.routerUrl}  (task ${s.taskId})\n`,
    );
}

/** Where npm was run from: `job run FILE` names the file relative to it, and its file("…") paths are too. */
const CALLER_DIR = process.env.INIT_CWD ?? process.cwd();

interface DrainOutcome {
  readonly taskKey: string;
  readonly outcome: string;
  readonly reason?: string;
  readonly migration?: {
    readonly source: { node: string };
    readonly target: { node: string };
    readonly freezeMs?: number;
    readonly wireBytes?: number;
    readonly error?: { message: string };
  };
}

async function controllerCall(
  registry: ClusterRegistry,
  id: string | undefined,
  path: string,
  body: unknown,
  method = 'POST',
): Promise<unknown> {
  const running = registry.list().filter((r) => r.controllerUrl !== undefined && (id === undefined || r.id === id));
  const cluster = running[0];
  if (cluster?.controllerUrl === undefined)
    throw new Error(
      id === undefined ? 'no local mode is running (start it with npm start)' : `cluster ${id} runs no controller`,
    );
  if (running.length > 1)
    throw new Error(`several clusters run a controller (${running.map((r) => r.id).join(', ')}): pick one with -id`);
  const res = await fetch(`${cluster.controllerUrl}${path}`, {
    method,
    headers: { 'content-type': 'application/json' },
    ...(method === 'POST' ? { body: JSON.stringify(body) } : {}),
  });
  const answer: unknown = await res.json();
  if (!res.ok) {
    const { error, code } = answer as { error?: string; code?: string };
    throw new Error(`${error ?? `controller answered ${res.status}`}${code === undefined ? '' : ` (${code})`}`);
  }
  return answer;
}

function flag(args: readonly string[], name: string): string | undefined {
  const i = args.findIndex((a) => a === `-${name}` || a === `--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
}

async function main(args: readonly string[]): Promise<number> {
  const registry = new ClusterRegistry();
  switch (args[0]) {
    case 'up': {
      const services = flag(args, 'services')
        ?.split(',')
        .filter((s) => s !== '');
      const cluster = await LocalCluster.up(
        { nodes: Number(flag(args, 'nodes') ?? 3), ...(services ? { services } : {}) },
        registry,
      );
      const record = registry.list().find((r) => r.id === cluster.id);
      if (record) process.stdout.write(`${describe(record)}\n\nStop it with: npm run cluster -- down ${cluster.id}\n`);
      return 0;
    }
    case 'status': {
      const records = registry.list();
      if (records.length === 0) process.stdout.write('No local clusters.\n');
      for (const r of records)
        process.stdout.write(`${describe(r)}${isOrphaned(r) ? '' : `\n  (owned by running process ${r.ownerPid})`}\n`);
      return 0;
    }
    case 'down': {
      const records = registry.list().filter((r) => (args[1] === undefined ? isOrphaned(r) : r.id === args[1]));
      if (args[1] !== undefined && records.length === 0) {
        process.stderr.write(`No local cluster with id ${args[1]}.\n`);
        return 1;
      }
      for (const r of records) {
        await destroyCluster(r, registry);
        process.stdout.write(`cluster ${r.id} down (logs kept in ${r.runDir}/logs)\n`);
      }
      return 0;
    }
    case 'drain': {
      const node = args[1];
      if (node === undefined) throw new Error('drain needs a node name');
      const started = Date.now();
      process.stdout.write(`==> Draining ${node}: its chained tasks move with their state\n`);
      const outcomes = (await controllerCall(registry, flag(args, 'id'), `/v1/node/${node}/drain`, {
        reason: 'npm run cluster -- drain',
      })) as DrainOutcome[];
      for (const o of outcomes) {
        const m = o.migration;
        if (o.outcome === 'moved' && m)
          process.stdout.write(
            `    ${o.taskKey}: moved ${m.source.node} -> ${m.target.node} (freeze ${m.freezeMs ?? '?'} ms, ${m.wireBytes ?? '?'} bytes on the wire)\n`,
          );
        else
          process.stdout.write(
            `    ${o.taskKey}: ${o.outcome}${o.reason ? `: ${o.reason}` : ''}${m?.error ? `: ${m.error.message}` : ''}\n`,
          );
      }
      process.stdout.write(
        `==> Drain of ${node} complete in ${Date.now() - started} ms (${outcomes.length} chained task(s))\n`,
      );
      return outcomes.every((o) => o.outcome === 'moved') ? 0 : 1;
    }
    case 'eligibility': {
      const node = args[1];
      const enable = args.includes('-enable') || args.includes('--enable');
      if (node === undefined || enable === (args.includes('-disable') || args.includes('--disable')))
        throw new Error('eligibility needs NODE and one of -enable, -disable');
      await controllerCall(registry, flag(args, 'id'), `/v1/node/${node}/eligibility`, {
        Eligibility: enable ? 'eligible' : 'ineligible',
      });
      process.stdout.write(
        `Node ${node} scheduling eligibility set: ${enable ? 'eligible' : 'ineligible'} for scheduling\n`,
      );
      return 0;
    }
    case 'job':
      return job(registry, args.slice(1));
    default:
      process.stderr.write(USAGE);
      return args[0] === undefined || args[0] === '-h' || args[0] === '--help' ? 0 : 1;
  }
}

async function job(registry: ClusterRegistry, args: readonly string[]): Promise<number> {
  const id = flag(args, 'id');
  const target = args[1]?.startsWith('-') === true ? undefined : args[1];
  switch (args[0]) {
    case 'run': {
      if (target === undefined) throw new Error('job run needs a job file');
      const path = resolve(CALLER_DIR, target);
      process.stdout.write(`==> Running ${path}\n`);
      const status = (await controllerCall(registry, id, '/v1/jobs', { path, baseDir: CALLER_DIR })) as JobStatus;
      for (const note of status.ignored) process.stdout.write(`    ignored in local mode: ${note}\n`);
      printJob(status);
      return 0;
    }
    case 'status': {
      const path = target === undefined ? '/v1/jobs' : `/v1/job/${encodeURIComponent(target)}`;
      const answer = await controllerCall(registry, id, path, undefined, 'GET');
      const statuses = (Array.isArray(answer) ? answer : [answer]) as JobStatus[];
      if (statuses.length === 0) process.stdout.write('No jobs running.\n');
      for (const status of statuses) printJob(status);
      return 0;
    }
    case 'stop': {
      if (target === undefined) throw new Error('job stop needs a job name');
      await controllerCall(registry, id, `/v1/job/${encodeURIComponent(target)}`, undefined, 'DELETE');
      process.stdout.write(`==> Job "${target}" stopped\n`);
      return 0;
    }
    default:
      throw new Error('job needs run FILE, status [NAME] or stop NAME');
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`Error: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
