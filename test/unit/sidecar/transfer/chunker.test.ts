import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ContentDefinedChunker, sha256 } from '../../../../sidecar/src/transfer/chunker';
import type { ChunkerEvent } from '../../../../sidecar/src/transfer/chunker';
import { pseudoRandom, removeAll, tempDir } from '../../../contract/transfer/fixtures';

const params = { minBytes: 2048, avgBytes: 8192, maxBytes: 34816 };

function cuts(chunker: ContentDefinedChunker, data: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let pos = 0; pos < data.length;) {
    const cut = chunker.nextCut(data, pos, data.length, true);
    out.push(data.subarray(pos, cut));
    pos = cut;
  }
  return out;
}

async function collect(dir: string, chunker = new ContentDefinedChunker(params)): Promise<ChunkerEvent[]> {
  const events: ChunkerEvent[] = [];
  for await (const e of chunker.chunkDirectory(dir)) events.push(e);
  return events;
}

describe('ContentDefinedChunker', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await tempDir('chunker');
  });
  afterEach(async () => removeAll(dir));

  it('cuts within the size bounds and covers every byte', () => {
    const data = pseudoRandom('bounds', 1_000_000);
    const chunks = cuts(new ContentDefinedChunker(params), data);
    expect(Buffer.concat(chunks).equals(data)).toBe(true);
    for (const c of chunks.slice(0, -1)) {
      expect(c.length).toBeGreaterThanOrEqual(params.minBytes);
      expect(c.length).toBeLessThanOrEqual(params.maxBytes);
    }
    const mean = data.length / chunks.length;
    expect(mean).toBeGreaterThan(params.avgBytes / 2);
    expect(mean).toBeLessThan(params.avgBytes * 2);
  });

  it('finds the same chunks after bytes are inserted early in the data (content-defined, not offsets)', () => {
    const chunker = new ContentDefinedChunker(params);
    const data = pseudoRandom('shift', 600_000);
    const shifted = Buffer.concat([data.subarray(0, 1000), Buffer.from('inserted bytes'), data.subarray(1000)]);
    const before = new Set(cuts(chunker, data).map((c) => sha256(c).toString('hex')));
    const after = cuts(chunker, shifted).map((c) => sha256(c).toString('hex'));
    const changed = after.filter((h) => !before.has(h)).length;
    expect(changed).toBeLessThanOrEqual(3);
  });

  it('re-aligns after an in-place change in data without cut points (zero pages)', () => {
    const chunker = new ContentDefinedChunker(params);
    const data = Buffer.alloc(1_000_000);
    const changed = Buffer.from(data);
    pseudoRandom('x', 5000).copy(changed, 400_000);
    const before = new Set(cuts(chunker, data).map((c) => sha256(c).toString('hex')));
    const fresh = cuts(chunker, changed).filter((c) => !before.has(sha256(c).toString('hex')));
    const freshBytes = fresh.reduce((s, c) => s + c.length, 0);
    expect(freshBytes).toBeLessThanOrEqual(5000 + 2 * params.maxBytes);
  });

  it('walks a directory in path order, streaming files larger than its read block', async () => {
    await mkdir(join(dir, 'b-dir'));
    const big = pseudoRandom('big', 9 * 1024 * 1024 + 17);
    await writeFile(join(dir, 'b-dir', 'big.img'), big);
    await writeFile(join(dir, 'a.img'), 'small');
    await writeFile(join(dir, 'c.img'), Buffer.alloc(0));
    const events = await collect(dir);
    expect(events.filter((e) => e.kind !== 'chunk').map((e) => `${e.kind}:${e.path}`)).toEqual([
      'file:a.img',
      'directory:b-dir',
      'file:b-dir/big.img',
      'file:c.img',
    ]);
    const start = events.findIndex((e) => e.kind === 'file' && e.path === 'b-dir/big.img');
    const bigChunks = events
      .slice(start + 1)
      .filter((e): e is Extract<ChunkerEvent, { kind: 'chunk' }> => e.kind === 'chunk');
    const joined = Buffer.concat(bigChunks.slice(0, -0 || undefined).map((e) => e.data));
    expect(joined.subarray(0, big.length).equals(big)).toBe(true);
    for (const e of bigChunks) expect(e.digest.equals(sha256(e.data))).toBe(true);
  });

  it('cuts a directory of small files, read whole and several at once, as it cuts their bytes in one piece', async () => {
    const chunker = new ContentDefinedChunker(params, undefined, 16384);
    const files = new Map<string, Buffer>();
    for (let i = 0; i < 24; i += 1) files.set(`f-${String(i).padStart(2, '0')}.img`, pseudoRandom(`f${i}`, i * 3001));
    files.set('pages-1.img', pseudoRandom('pages', 3 * 16384 + 4096));
    files.set('sub/pages-2.img', pseudoRandom('pages2', 5 * 1024 * 1024 + 4096));
    files.set('sub/core-1.img', pseudoRandom('core', 4 * 1024 * 1024));
    files.set('sub/mm-1.img', pseudoRandom('mm', 4 * 1024 * 1024 + 1));
    await mkdir(join(dir, 'sub'));
    for (const [name, data] of files) await writeFile(join(dir, name), data);
    const expected: string[] = [];
    for (const name of [...files.keys()].sort()) {
      if (name === 'sub/core-1.img') expected.push('directory:sub');
      const data = files.get(name) as Buffer;
      expected.push(`file:${name}:${data.length}`);
      const pieces = name.includes('pages-')
        ? Array.from({ length: Math.ceil(data.length / 16384) }, (_, k) => data.subarray(k * 16384, (k + 1) * 16384))
        : cuts(chunker, data);
      for (const piece of pieces) expected.push(`chunk:${sha256(piece).toString('hex')}:${piece.length}`);
    }
    const events = await collect(dir, chunker);
    for (const e of events) if (e.kind === 'chunk') expect(e.digest.equals(sha256(e.data))).toBe(true);
    expect(
      events.map((e) =>
        e.kind === 'chunk'
          ? `chunk:${e.digest.toString('hex')}:${e.data.length}`
          : e.kind === 'file'
            ? `file:${e.path}:${e.sizeBytes}`
            : `directory:${e.path}`,
      ),
    ).toEqual(expected);
  });

  it('refuses anything but files and directories', async () => {
    await writeFile(join(dir, 'a.img'), 'x');
    await symlink('a.img', join(dir, 'link'));
    await expect(collect(dir)).rejects.toMatchObject({ code: 'NC_TRANSFER_SOURCE_INVALID' });
  });

  it('rejects inconsistent parameters', () => {
    expect(() => new ContentDefinedChunker({ minBytes: 100, avgBytes: 3000, maxBytes: 9000 })).toThrow(RangeError);
  });
});

describe('page images', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await tempDir('pages');
  });
  afterEach(async () => removeAll(dir));

  it('cuts pages-*.img into fixed-size chunks and other files by content', async () => {
    const { isPageImage } = await import('../../../../sidecar/src/transfer/chunker');
    expect(isPageImage('pages-1.img')).toBe(true);
    expect(isPageImage('criu/pages-12.img')).toBe(true);
    expect(isPageImage('pagemap-1.img')).toBe(false);
    expect(isPageImage('pages-1.img.bak')).toBe(false);
    const pages = pseudoRandom('pages', 5 * 16384 + 4096);
    await writeFile(join(dir, 'pages-1.img'), pages);
    await writeFile(join(dir, 'core-1.img'), pseudoRandom('core', 100_000));
    const chunker = new ContentDefinedChunker(params, undefined, 16384);
    expect(chunker.maxChunkBytes).toBe(params.maxBytes);
    const events = await collect(dir, chunker);
    const sizesOf = (name: string): number[] => {
      const at = events.findIndex((e) => e.kind === 'file' && e.path === name);
      const out: number[] = [];
      for (const e of events.slice(at + 1)) {
        if (e.kind !== 'chunk') break;
        expect(e.digest.equals(sha256(e.data))).toBe(true);
        out.push(e.data.length);
      }
      return out;
    };
    expect(sizesOf('pages-1.img')).toEqual([16384, 16384, 16384, 16384, 16384, 4096]);
    expect(sizesOf('core-1.img').length).toBeGreaterThan(2);
    expect(new Set(sizesOf('core-1.img').slice(0, -1)).size).toBeGreaterThan(1);
  });

  it('a changed page costs only the chunk that holds it', async () => {
    const chunker = new ContentDefinedChunker(params, undefined, 16384);
    const pages = pseudoRandom('pages', 8 * 16384);
    await writeFile(join(dir, 'pages-1.img'), pages);
    const before = (await collect(dir, chunker)).flatMap((e) => (e.kind === 'chunk' ? [e.digest.toString('hex')] : []));
    pages.fill(7, 3 * 16384 + 100, 3 * 16384 + 4196);
    await writeFile(join(dir, 'pages-1.img'), pages);
    const after = (await collect(dir, chunker)).flatMap((e) => (e.kind === 'chunk' ? [e.digest.toString('hex')] : []));
    expect(after.filter((d) => !before.includes(d))).toHaveLength(1);
  });

  it('refuses a page chunk size that is not whole pages', () => {
    expect(() => new ContentDefinedChunker(params, undefined, 5000)).toThrow(RangeError);
  });
});
