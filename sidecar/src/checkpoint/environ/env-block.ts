/** Why a variable whose value differs between the two allocations keeps its old value in a process. */
export type KeptReason =
  /** The new value has another byte length: the block cannot grow or shrink in place. */
  | 'length-differs'
  /** Set in only one of the two allocations: a block cannot gain or lose an entry in place. */
  | 'only-in-one'
  /** The process's block holds no `NAME=old value` entry: the process (or its parent) changed its environment. */
  | 'changed-by-process';

export interface KeptVariable {
  readonly name: string;
  readonly reason: KeptReason;
}

export interface BlockPatch {
  /** Byte offset in the block. */
  readonly offset: number;
  readonly bytes: Buffer;
}

export interface BlockPlan {
  readonly patches: readonly BlockPatch[];
  readonly rewritten: readonly string[];
  readonly kept: readonly KeptVariable[];
}

/** One variable to change: the old and new values, as the block holds them (UTF-8). */
export interface EnvChange {
  readonly name: string;
  readonly from: Buffer;
  readonly to: Buffer;
}

export interface EnvDiff {
  /** Same length: rewritable in place wherever a block still holds the old value. */
  readonly changes: readonly EnvChange[];
  /** Cannot be rewritten in any block. */
  readonly kept: readonly KeptVariable[];
}

/** The variables whose values differ between the checkpoint's environment and the new allocation's. */
export function diffEnv(from: Readonly<Record<string, string>>, to: Readonly<Record<string, string>>): EnvDiff {
  const changes: EnvChange[] = [];
  const kept: KeptVariable[] = [];
  const names = [...new Set([...Object.keys(from), ...Object.keys(to)])].sort();
  for (const name of names) {
    const old = from[name];
    const next = to[name];
    if (old === next) continue;
    if (old === undefined || next === undefined) {
      kept.push({ name, reason: 'only-in-one' });
      continue;
    }
    const change = { name, from: Buffer.from(old), to: Buffer.from(next) };
    if (change.from.length === change.to.length) changes.push(change);
    else kept.push({ name, reason: 'length-differs' });
  }
  return { changes, kept };
}

/**
 * Plans the in-place rewrite of one environment block (`NAME=value\0` entries, as execve laid them out between
 * mm_env_start and mm_env_end): every entry `NAME=old` of a change gets the new value at the same offset.
 * libc's getenv() and Node's process.env read these bytes live, so the process sees the new value.
 */
export function planBlockRewrite(block: Buffer, changes: readonly EnvChange[]): BlockPlan {
  const entries = splitBlock(block);
  const patches: BlockPatch[] = [];
  const rewritten: string[] = [];
  const kept: KeptVariable[] = [];
  for (const change of changes) {
    const prefix = Buffer.from(`${change.name}=`);
    const hits = entries.filter((e) => e.bytes.subarray(0, prefix.length).equals(prefix));
    const matching = hits.filter((e) => e.bytes.subarray(prefix.length).equals(change.from));
    // An entry with another value means the environment is no longer the one the checkpoint's spec gave it.
    if (matching.length === 0 || matching.length !== hits.length) {
      kept.push({ name: change.name, reason: 'changed-by-process' });
      continue;
    }
    for (const entry of matching) patches.push({ offset: entry.offset + prefix.length, bytes: change.to });
    rewritten.push(change.name);
  }
  return { patches, rewritten, kept };
}

interface BlockEntry {
  readonly offset: number;
  readonly bytes: Buffer;
}

function splitBlock(block: Buffer): BlockEntry[] {
  const entries: BlockEntry[] = [];
  let offset = 0;
  while (offset < block.length) {
    const nul = block.indexOf(0, offset);
    const end = nul === -1 ? block.length : nul;
    entries.push({ offset, bytes: block.subarray(offset, end) });
    offset = end + 1;
  }
  return entries;
}
