import { runCommand } from '../runtime/run-command';

/**
 * Removes every jump to the CRIU chain, then the chain, in iptables and ip6tables; prints how many jumps
 * it removed. One shell for all of it: each dump ran up to eighteen iptables commands, and a process
 * spawned from the sidecar costs far more than one spawned from a shell (300-900 ms on a loaded node).
 */
const UNLOCK_SCRIPT = `
removed=0
for tool in iptables ip6tables; do
  "$tool" -w -S CRIU >/dev/null 2>&1 || continue
  for builtin in INPUT OUTPUT FORWARD; do
    i=0
    while [ "$i" -lt 64 ] && "$tool" -w -D "$builtin" -j CRIU >/dev/null 2>&1; do
      i=$((i + 1))
      removed=$((removed + 1))
    done
  done
  "$tool" -w -F CRIU >/dev/null 2>&1
  "$tool" -w -X CRIU >/dev/null 2>&1
done
echo "$removed"
`;

/**
 * CRIU locks a network namespace during a dump with an iptables chain named CRIU that drops everything but
 * its own marked packets, and leaves it behind in both iptables and ip6tables when the task leaves the
 * namespace. Only a restore into the same namespace removes it; a rollback, a resumed source or a move to
 * another node must remove it here, or the node's other traffic stays dropped.
 */
export async function removeCriuNetworkLock(netnsPath: string, timeoutMs = 10_000): Promise<number> {
  // A task in the sidecar's own namespace leaves the lock in a namespace other software shares: not ours to edit.
  if (netnsPath === '') return 0;
  const result = await runCommand('nsenter', [`--net=${netnsPath}`, '/bin/sh', '-c', UNLOCK_SCRIPT], { timeoutMs });
  return Number.parseInt(String(result.stdout).trim(), 10) || 0;
}
