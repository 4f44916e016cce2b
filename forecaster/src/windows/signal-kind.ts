import { isTerminalNotice } from '../policy/drain-policy';

/**
 * How a cloud signal enters a node's history. A signal that announces the node's end (an interruption notice, a
 * terminating maintenance) is a `notice`; any other (an AWS rebalance recommendation, a GCE live migration, an Azure
 * freeze or reboot) is `advice`: a feature of its own, since no pre-emption need follow it. Neither is a label. A
 * signal whose kind is unknown to the sender's caller (empty) counts as a notice, as the trace format reads it
 * (forecaster/training/README.md, "Cloud signals").
 */
export function historyKindOfSignal(kind: string): 'notice' | 'advice' {
  return kind === '' || isTerminalNotice(kind) ? 'notice' : 'advice';
}
