/**
 * Seeded input generation for the fuzzers: a small PRNG (mulberry32) so a failing input is reproduced from
 * its seed and iteration alone, and byte-level mutations of valid encodings (the kinds a broken or hostile
 * peer sends: flipped bits, cut-off frames, spliced garbage, boundary values).
 */
export class Rng {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** A float in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new RangeError('pick from an empty list');
    return items[this.int(items.length)] as T;
  }

  bytes(n: number): Buffer {
    const out = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i += 1) out[i] = this.int(256);
    return out;
  }
}

const INTERESTING_BYTES = [0x00, 0x01, 0x7f, 0x80, 0xff, 0xfe, 0x0a, 0x2f, 0x2e];

/** Values at the edges of the integer types a protobuf or msgpack field holds. */
export const BOUNDARY_INTS = [0, 1, -1, 0x7f, 0x80, 0xff, 0x7fff, 0xffff, 0x7fffffff, 0xffffffff, 2 ** 53 - 1];

/** One to four random byte-level edits of `input`, never in place. */
export function mutateBytes(rng: Rng, input: Uint8Array): Buffer {
  let data: Buffer = Buffer.from(input);
  const edits = 1 + rng.int(4);
  for (let e = 0; e < edits; e += 1) {
    const at = data.length === 0 ? 0 : rng.int(data.length);
    switch (rng.int(8)) {
      case 0:
        if (data.length > 0) data[at] = (data[at] as number) ^ (1 << rng.int(8));
        break;
      case 1:
        if (data.length > 0) data[at] = rng.pick(INTERESTING_BYTES);
        break;
      case 2:
        data = Buffer.concat([data.subarray(0, at), rng.bytes(1 + rng.int(16)), data.subarray(at)]);
        break;
      case 3:
        data = Buffer.concat([data.subarray(0, at), data.subarray(Math.min(data.length, at + 1 + rng.int(16)))]);
        break;
      case 4:
        data = data.subarray(0, at);
        break;
      case 5: {
        const len = Math.min(data.length - at, 1 + rng.int(32));
        data = Buffer.concat([data.subarray(0, at + len), data.subarray(at, at + len), data.subarray(at + len)]);
        break;
      }
      case 6:
        data = rng.bytes(rng.int(64));
        break;
      default:
        if (data.length > 0) data.fill(rng.pick(INTERESTING_BYTES), at, Math.min(data.length, at + 1 + rng.int(8)));
    }
  }
  return data;
}

/** Counts of what a fuzzer's inputs came to, by outcome. */
export class OutcomeTally {
  readonly counts = new Map<string, number>();
  readonly defects: string[] = [];
  inputs = 0;

  add(outcome: string): void {
    this.inputs += 1;
    this.counts.set(outcome, (this.counts.get(outcome) ?? 0) + 1);
  }

  /** A defect keeps its reproducer (seed and iteration) for the report; the first few are enough. */
  defect(description: string): void {
    this.add('DEFECT');
    if (this.defects.length < 20) this.defects.push(description);
  }

  summary(): Record<string, number> {
    return Object.fromEntries([...this.counts.entries()].sort(([a], [b]) => a.localeCompare(b)));
  }
}
