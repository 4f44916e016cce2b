import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PagemapEntry, PagemapHead } from '../../../../../proto/gen/criu/images';
import { IMG_COMMON_MAGIC, PAGEMAP_MAGIC } from '../../../../../sidecar/src/checkpoint/environ/image-file';
import { PAGE_SIZE, PageMap } from '../../../../../sidecar/src/checkpoint/environ/page-map';

function image(magic: number, entries: Uint8Array[]): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32LE(IMG_COMMON_MAGIC, 0);
  head.writeUInt32LE(magic, 4);
  return Buffer.concat([
    head,
    ...entries.flatMap((e) => {
      const size = Buffer.alloc(4);
      size.writeUInt32LE(e.length, 0);
      return [size, Buffer.from(e)];
    }),
  ]);
}

const PRESENT_LAZY = 6;
const LAZY = 2;
const PARENT = 1;

describe('pagemap: where a process address lies in its pages image', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pagemap-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  async function pageMap(entries: Partial<PagemapEntry>[]): Promise<PageMap> {
    await writeFile(
      join(dir, 'pagemap-1.img'),
      image(PAGEMAP_MAGIC, [
        PagemapHead.encode({ pagesId: 7 }).finish(),
        ...entries.map((e) => PagemapEntry.encode(PagemapEntry.fromPartial(e)).finish()),
      ]),
    );
    const map = await PageMap.read(dir, 1);
    if (map === undefined) throw new Error('no pagemap');
    return map;
  }

  it('counts only present runs in file offsets, across runs', async () => {
    const map = await pageMap([
      { vaddr: 0x1000, nrPages: 2, flags: PRESENT_LAZY },
      { vaddr: 0x10000, nrPages: 1, flags: LAZY },
      { vaddr: 0x20000, nrPages: 1, flags: PRESENT_LAZY },
      { vaddr: 0x21000, nrPages: 1, flags: PRESENT_LAZY },
    ]);
    expect(map.pagesPath).toBe(join(dir, 'pages-7.img'));
    expect(map.locate(0x1010, 0x1020)).toEqual({ inImage: true, segments: [{ fileOffset: 0x10, length: 0x10 }] });
    expect(map.locate(0x20ff0, 0x21010)).toEqual({
      inImage: true,
      segments: [
        { fileOffset: 2 * PAGE_SIZE + 0xff0, length: 0x10 },
        { fileOffset: 3 * PAGE_SIZE, length: 0x10 },
      ],
    });
    expect(map.locate(0x10000, 0x10010)).toEqual({ inImage: false, reason: 'pages-on-source' });
    expect(map.locate(0x3000, 0x3010)).toEqual({ inImage: false, reason: 'pages-not-dumped' });
  });

  it('reads images older than the flags and the 64-bit page count as CRIU does', async () => {
    const map = await pageMap([
      { vaddr: 0x1000, compatNrPages: 1 },
      { vaddr: 0x2000, compatNrPages: 1, inParent: true },
      { vaddr: 0x3000, compatNrPages: 1, flags: PARENT },
    ]);
    expect(map.locate(0x1000, 0x1001)).toEqual({ inImage: true, segments: [{ fileOffset: 0, length: 1 }] });
    expect(map.locate(0x2000, 0x2001)).toEqual({ inImage: false, reason: 'pages-in-parent' });
    expect(map.locate(0x3000, 0x3001)).toEqual({ inImage: false, reason: 'pages-in-parent' });
  });

  it('refuses an image without the pagemap magic, by code', async () => {
    await writeFile(join(dir, 'pagemap-1.img'), image(0x12345678, []));
    await expect(PageMap.read(dir, 1)).rejects.toMatchObject({ code: 'NC_ENV_IMAGE_UNREADABLE' });
  });
});
