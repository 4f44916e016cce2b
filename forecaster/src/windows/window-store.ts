import { LRUCache } from 'lru-cache';
import { NodeWindow } from './node-window';

export interface WindowStoreConfig {
  readonly maxNodes: number;
  readonly samplesPerNode: number;
  readonly eventsPerNode: number;
  /** A node not touched for this long is forgotten. */
  readonly staleAfterMs: number;
}

/**
 * Every tracked node's window, bounded by count (least recently touched evicted first) and by age. The LRU
 * runs on the forecaster's own clock so tests and replays control expiry.
 */
export class WindowStore {
  private readonly cache: LRUCache<string, NodeWindow>;
  private evictions = 0;

  constructor(
    private readonly config: WindowStoreConfig,
    now: () => number,
    onForget: (window: NodeWindow) => void = () => undefined,
  ) {
    this.cache = new LRUCache<string, NodeWindow>({
      max: config.maxNodes,
      ttl: config.staleAfterMs > 0 ? config.staleAfterMs : undefined,
      updateAgeOnGet: false,
      // No cached "now": the forecaster's clock may jump (tests, replays) between two reads.
      ttlResolution: 0,
      perf: { now },
      dispose: (value, _key, reason) => {
        if (reason === 'evict' || reason === 'expire') {
          this.evictions += 1;
          onForget(value);
        }
      },
    });
  }

  /** The node's window, created on first sight; touching it renews its age. */
  touch(node: string): NodeWindow {
    let window = this.cache.get(node);
    window ??= new NodeWindow(node, this.config.samplesPerNode, this.config.eventsPerNode);
    this.cache.set(node, window);
    return window;
  }

  get(node: string): NodeWindow | undefined {
    return this.cache.get(node);
  }

  delete(node: string): void {
    this.cache.delete(node);
  }

  /** Live windows, stale ones purged first. */
  all(): NodeWindow[] {
    this.cache.purgeStale();
    return [...this.cache.values()];
  }

  get size(): number {
    return this.cache.size;
  }

  get evicted(): number {
    return this.evictions;
  }
}
