import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { NomadChainError } from './errors';

/** Where the project looks for each external binary, first match wins: an env override, then known paths, then PATH. */
export const BINARIES = {
  criu: { env: 'CRIU_BIN', paths: ['/usr/local/sbin/criu'] },
  runc: { env: 'RUNC_BIN', paths: ['/usr/sbin/runc', '/usr/bin/runc'] },
  haproxy: { env: 'HAPROXY_BIN', paths: ['/usr/sbin/haproxy'] },
  iptables: { env: 'IPTABLES_BIN', paths: ['/usr/sbin/iptables'] },
  ip: { env: 'IP_BIN', paths: ['/usr/sbin/ip', '/sbin/ip'] },
  nsenter: { env: 'NSENTER_BIN', paths: ['/usr/bin/nsenter'] },
  setfacl: { env: 'SETFACL_BIN', paths: ['/usr/bin/setfacl', '/bin/setfacl'] },
  go: { env: 'GO_BIN', paths: ['/usr/local/go/bin/go'] },
  // The builds scripts/setup.sh caches (scripts/hashicorp-build/).
  nomad: { env: 'NOMAD_BIN', paths: ['/var/cache/nomad-chain/bin/nomad-1.6.3'] },
  consul: { env: 'CONSUL_BIN', paths: ['/var/cache/nomad-chain/bin/consul-1.16.1'] },
} as const satisfies Record<string, { env: string; paths: readonly string[] }>;

export type BinaryName = keyof typeof BINARIES;

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Resolves a binary. An env override that points nowhere is an error, not a fallback: an operator who set
 * CRIU_BIN means that CRIU and must hear it is missing.
 */
export function resolveBinary(name: BinaryName, env: NodeJS.ProcessEnv = process.env): string {
  const spec = BINARIES[name];
  const override = env[spec.env];
  if (override !== undefined && override !== '') {
    if (executable(override)) return override;
    throw new NomadChainError('NC_BINARY_MISSING', `${name}: ${spec.env}=${override} is not an executable file`, {
      context: { binary: name, path: override },
    });
  }
  for (const path of spec.paths) if (executable(path)) return path;
  for (const dir of (env.PATH ?? '').split(delimiter)) {
    if (dir !== '' && executable(join(dir, name))) return join(dir, name);
  }
  throw new NomadChainError('NC_BINARY_MISSING', `${name}: not found (set ${spec.env} or run npm run setup)`, {
    context: { binary: name },
  });
}
