import { LocalCluster, describe, destroyCluster, isOrphaned } from './cluster';
import { ClusterRegistry } from './registry';

const USAGE = `Usage: npm run cluster -- <command> [options]

Commands:
  up [-nodes N] [-services a,b]   Start a local cluster (default 3 nodes, one service "app") and leave it running
  status                          List the local clusters on this machine
  down [ID]                       Stop a cluster (default: every cluster whose owner is gone, crashed runs included)
`;

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
