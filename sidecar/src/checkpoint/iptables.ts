import { runCommand } from '../runtime/run-command';

/**
 * CRIU locks a network namespace during a dump with an iptables chain named CRIU that drops everything but
 * its own marked packets, and leaves it behind in both iptables and ip6tables when the task leaves the
 * namespace. Only a restore into the same namespace removes it; a rollback, a resumed source or a move to
 * another node must remove it here, or the node's other traffic stays dropped.
 */
export async function removeCriuNetworkLock(netnsPath: string, timeoutMs = 10_000): Promise<number> {
  let removed = 0;
  // A task in the sidecar's own namespace leaves the lock in a namespace other software shares: not ours to edit.
  if (netnsPath === '') return removed;
  for (const tool of ['iptables', 'ip6tables']) {
    const inNs = (args: string[]) => runCommand('nsenter', [`--net=${netnsPath}`, tool, '-w', ...args], { timeoutMs });
    if ((await inNs(['-S', 'CRIU'])).exitCode !== 0) continue;
    for (const builtin of ['INPUT', 'OUTPUT', 'FORWARD']) {
      // Each dump may add another jump; remove them until none is left.
      for (let i = 0; i < 64 && (await inNs(['-D', builtin, '-j', 'CRIU'])).exitCode === 0; i++) removed++;
    }
    await inNs(['-F', 'CRIU']);
    await inNs(['-X', 'CRIU']);
  }
  return removed;
}
