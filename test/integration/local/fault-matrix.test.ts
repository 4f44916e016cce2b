import pino from 'pino';
import { runCell, type CellOutcome, type Fault, type FaultStep } from '../../harness/fault-matrix';

// Issue #13: the fast subset of `npm run chaos` (every cell: bench/chaos.ts). Each cell is a drain of the
// kv service on a real local cluster with one fault injected right after a journaled step, everything
// restarted that a node would restart, then runc's view, the router, the state and leftovers checked.
const log = pino({ level: process.env.NOMAD_CHAIN_TEST_LOG ?? 'silent' });

const CELLS: readonly (readonly [FaultStep, Fault, CellOutcome])[] = [
  // The source's sidecar dies before the dump: the restarted controller retries, the task moves.
  ['left-rotation', 'source-sidecar-kill', 'moved'],
  // The target node vanishes with the checkpoint on it: the source comes back from its own copy.
  ['handed-over', 'target-node-gone', 'rolled back'],
  // The source node vanishes after the hand-over: the target restores, the clean-up waits for the node.
  ['handed-over', 'source-node-gone', 'moved'],
  // Packets between the nodes dropped once the checkpoint is across: the target still restores and serves.
  ['handed-over', 'partition', 'moved'],
  // A proxy flips one byte of the push into the target's store: TLS refuses the stream, the source comes back.
  ['left-rotation', 'corrupt-in-flight', 'rolled back'],
];

describe('fault matrix, fast subset (real local cluster)', () => {
  it.each(CELLS)('after %s, %s: exactly one running copy, served, nothing lost (%s)', async (step, fault, outcome) => {
    const result = await runCell(step, fault, log);
    expect(result.failures).toEqual([]);
    expect(result.outcome).toBe(outcome);
  });
});
