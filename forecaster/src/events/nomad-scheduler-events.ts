import type { Clock } from '../../../common/clock';
import type { Logger } from '../../../common/logging';
import type { Event, Node, NomadApi } from '../../../common/nomad-api';
import type { SchedulerEvent, SchedulerEventHandler, SchedulerEvents } from './scheduler-events';

interface NodeView {
  status: string;
  draining: boolean;
}

/**
 * SchedulerEvents from Nomad's event stream (topic Node), resuming after the last index it delivered. Nomad
 * sends a whole Node per event; this keeps each node's last status and drain state and turns changes into
 * joins, departures and drain transitions. A node that goes `down` without a drain is counted as pre-empted:
 * on spot capacity that is what an unannounced disappearance is.
 */
export class NomadSchedulerEvents implements SchedulerEvents {
  private lastIndex = 0;
  private readonly nodes = new Map<string, NodeView>();

  constructor(
    private readonly nomad: NomadApi,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {}

  get index(): number {
    return this.lastIndex;
  }

  async follow(handler: SchedulerEventHandler, signal: AbortSignal): Promise<void> {
    const stream = this.nomad.events({
      topics: { Node: ['*'] },
      index: this.lastIndex === 0 ? undefined : this.lastIndex + 1,
      signal,
      onReconnect: ({ err, attempt, delayMs }) =>
        this.log.warn({ err, attempt, delayMs }, 'nomad event stream reconnecting'),
    });
    for await (const frame of stream) {
      for (const event of frame.Events) for (const e of this.translate(event)) handler(e);
      this.lastIndex = frame.Index;
      if (signal.aborted) return;
    }
  }

  /** One Nomad event to the scheduler events it implies (pure but for the per-node memory). */
  translate(event: Event): SchedulerEvent[] {
    if (event.Topic !== 'Node') return [];
    const node = event.Payload.Node as Partial<Node> | undefined;
    if (node?.Name === undefined || node.Name === '') return [];
    const name = node.Name;
    // Node events carry no time of their own: they are stamped on arrival.
    const timeMs = this.clock.now();
    const before = this.nodes.get(name);
    const status = node.Status ?? before?.status ?? 'ready';
    const draining = node.DrainStrategy !== null && node.DrainStrategy !== undefined;
    const out: SchedulerEvent[] = [];

    if (event.Type === 'NodeDeregistration') {
      this.nodes.delete(name);
      return [{ type: 'node-left', node: name, preempted: false, timeMs, detail: 'deregistered' }];
    }
    const wasUp = before !== undefined && before.status === 'ready';
    if (status === 'ready' && !wasUp) {
      out.push({ type: 'node-joined', node: name, pool: node.NodePool ?? '', nodeClass: node.NodeClass ?? '', timeMs });
    }
    if (draining && before?.draining !== true) {
      const meta = node.LastDrain?.Meta ?? {};
      out.push({ type: 'drain-started', node: name, timeMs, detail: meta['nomad_chain.reason'] ?? 'drain started' });
    }
    if (!draining && before?.draining === true) {
      const canceled = node.LastDrain?.Status === 'canceled';
      out.push({ type: canceled ? 'drain-canceled' : 'drain-complete', node: name, timeMs });
    }
    if ((status === 'down' || status === 'disconnected') && before?.status !== status && before !== undefined) {
      // A node that finished draining and then went away left in order; one that vanished was taken.
      const drained = before.draining || node.LastDrain?.Status === 'complete';
      out.push({
        type: 'node-left',
        node: name,
        preempted: !drained,
        timeMs,
        detail: node.StatusDescription ?? status,
      });
    }
    this.nodes.set(name, { status, draining });
    return out;
  }
}
