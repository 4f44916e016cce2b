import { randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { SegmentFiles } from '../../../../sidecar/src/store/segment-files';
import type { ChunkLocation } from '../../../../sidecar/src/store/segment-files';
import { removeAll, silentLogger, tempDir } from '../../../contract/transfer/fixtures';

describe('SegmentFiles', () => {
  let root: string;

  beforeEach(async () => {
    root = await tempDir('segments');
  });
  afterEach(async () => removeAll(root));

  it('appends under way at once land back to back, each readable where it was placed', async () => {
    const files = await SegmentFiles.open(join(root, 'segments'), silentLogger());
    const writer = files.writer();
    const blobs = Array.from({ length: 24 }, (_, i) => randomBytes(1000 + i * 97));
    const locations = await Promise.all(blobs.map((b) => writer.append(b)));
    writer.close();
    let offset = 0;
    for (const [i, location] of locations.entries()) {
      expect(location).toEqual({ segment: locations[0]?.segment, offset, length: blobs[i]?.length });
      offset += location.length;
      expect((await files.read(location)).equals(blobs[i] as Buffer)).toBe(true);
    }
    // Asked for at once, in any order: served by a few reads of neighbouring runs, each blob still its own.
    const shuffled = [...locations.keys()].sort((x, y) => ((x * 7) % 24) - ((y * 7) % 24));
    const read = await Promise.all(shuffled.map((i) => files.read(locations[i] as ChunkLocation)));
    shuffled.forEach((i, k) => expect((read[k] as Buffer).equals(blobs[i] as Buffer)).toBe(true));
    expect(files.usage()).toEqual({ totalBytes: offset, deadBytes: 0, segments: 1 });
    await files.close();
  });

  it('rolls over to a new segment at the size bound and deletes a segment once nothing in it is live', async () => {
    const files = await SegmentFiles.open(join(root, 'segments'), silentLogger(), 2500);
    const writer = files.writer();
    const [a, b, c] = await Promise.all([1000, 1000, 1000].map((n) => writer.append(randomBytes(n))));
    writer.close();
    expect(a?.segment).toBe(b?.segment);
    expect(c?.segment).not.toBe(a?.segment);
    files.release(a as ChunkLocation);
    expect(files.usage()).toEqual({ totalBytes: 3000, deadBytes: 1000, segments: 2 });
    files.release(b as ChunkLocation);
    await files.close();
    expect(await readdir(join(root, 'segments'))).toEqual([`${c?.segment}.seg`]);
    expect(files.usage()).toEqual({ totalBytes: 1000, deadBytes: 0, segments: 1 });
  });
});
