/**
 * A trace replay's nodes as the controller knows them: a trace node standing in for a local node (its alias,
 * the name watchers see), a trace node with no local node behind it (virtual: its events are told, actions on
 * it do nothing), and trace nodes that have left (a watcher may still act on them, and that too does nothing).
 * Outside a replay it is empty and every name is its own.
 */
export class TraceNodeAliases {
  /** A trace node's name → the local node standing in for it, and back. */
  private readonly aliases = new Map<string, string>();
  private readonly aliasOf = new Map<string, string>();
  private readonly virtualNodes = new Set<string>();
  private readonly departed = new Set<string>();

  /** Lets `alias` stand for local node `node` until `unalias`. */
  alias(alias: string, node: string): void {
    const previous = this.aliasOf.get(node);
    if (previous !== undefined) this.aliases.delete(previous);
    this.aliases.set(alias, node);
    this.aliasOf.set(node, alias);
    this.departed.delete(alias);
  }

  unalias(alias: string): void {
    const node = this.aliases.get(alias);
    if (node === undefined) return;
    this.aliases.delete(alias);
    this.aliasOf.delete(node);
    this.departed.add(alias);
  }

  /** The local node a name (alias or local name) stands for. */
  resolve(name: string): string {
    return this.aliases.get(name) ?? name;
  }

  /** The name watchers know a local node by: its alias while it has one. */
  publicName(node: string): string {
    return this.aliasOf.get(node) ?? node;
  }

  /** A trace node with no local node behind it: virtual, or gone. */
  isVirtual(name: string): boolean {
    return this.virtualNodes.has(name) || this.departed.has(name);
  }

  virtualJoined(name: string): void {
    this.virtualNodes.add(name);
    this.departed.delete(name);
  }

  /** Returns false when `name` is not a virtual node (then nothing changes). */
  virtualLeft(name: string): boolean {
    if (!this.virtualNodes.delete(name)) return false;
    this.departed.add(name);
    return true;
  }
}
