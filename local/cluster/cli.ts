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
`;

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
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const answer: unknown = await res.json();
  if (!res.ok) throw new Error((answer as { error?: string }).error ?? `controller answered ${res.status}`);
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
    default:
      process.stderr.write(USAGE);
      return args[0] === undefined || args[0] === '-h' || args[0] === '--help' ? 0 : 1;
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`Error: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
