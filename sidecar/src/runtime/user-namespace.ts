import { readFile } from 'node:fs/promises';
import { errorMessage } from '../../../common/errors';
import { runCommand, tail } from './run-command';

/**
 * The ids of a task's user namespace: ids 0..size-1 inside are hostId..hostId+size-1 on the node. Every node
 * uses the same mapping, so a file a task wrote (owned by a host id in that range) belongs to the same user
 * inside the task after a move, and a checkpoint's credentials mean the same on the target.
 */
export interface IdMapping {
  readonly hostId: number;
  readonly size: number;
}

export const DEFAULT_ID_MAPPING: IdMapping = Object.freeze({ hostId: 100_000, size: 65_536 });

/** The host id a task's id stands for. */
export function hostIdOf(mapping: IdMapping, id: number): number {
  return mapping.hostId + id;
}

/** CAP_SYS_RESOURCE's bit in /proc/PID/status's capability masks (linux/capability.h). */
const CAP_SYS_RESOURCE_BIT = 24n;

/** Whether a capability mask line (`CapEff:\t000001ffffffffff`) holds CAP_SYS_RESOURCE. */
export function hasSysResource(status: string): boolean {
  const hex = /^CapEff:\s*([0-9a-f]+)$/im.exec(status)?.[1];
  return hex !== undefined && ((BigInt(`0x${hex}`) >> CAP_SYS_RESOURCE_BIT) & 1n) === 1n;
}

export interface UserNamespaceSupport {
  /** The kernel lets this process create a user namespace. */
  readonly userNamespaces: boolean;
  /** Why not, when it does not (the command's error). */
  readonly userNamespacesError?: string;
  /**
   * This process may read other uids' rlimits (CRIU needs it to dump a task running as another user outside a
   * user namespace; inside one owned by the sidecar it is not needed).
   */
  readonly sysResource: boolean;
}

/** Finds out, by trying, whether user namespaces and CAP_SYS_RESOURCE are there. */
export async function probeUserNamespaceSupport(timeoutMs = 10_000): Promise<UserNamespaceSupport> {
  const status = await readFile('/proc/self/status', 'utf8');
  // max_user_namespaces, a hardened kernel's knobs or a seccomp profile may forbid it: only trying tells.
  let error: string | undefined;
  try {
    const tried = await runCommand('unshare', ['--user', '--map-root-user', 'true'], { timeoutMs });
    if (tried.exitCode !== 0) error = tail(tried.stderr) || `unshare exited with ${String(tried.exitCode)}`;
  } catch (err) {
    error = `unshare could not run: ${errorMessage(err)}`;
  }
  const ok = error === undefined;
  return {
    userNamespaces: ok,
    ...(error === undefined ? {} : { userNamespacesError: error }),
    sysResource: hasSysResource(status),
  };
}
