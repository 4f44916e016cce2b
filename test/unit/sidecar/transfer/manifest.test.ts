import { createHash } from 'node:crypto';
import { errorCode } from '../../../../common/errors';
import { Manifest } from '../../../../proto/gen/chain/v1/transfer';
import { sha256 } from '../../../../sidecar/src/transfer/chunker';
import { ManifestBuilder, distinctChunks, openManifest, sealManifest } from '../../../../sidecar/src/transfer/manifest';

function sample(): ReturnType<ManifestBuilder['seal']> {
  const builder = new ManifestBuilder();
  builder.add({ kind: 'directory', path: 'sub', mode: 0o755 });
  builder.add({ kind: 'file', path: 'sub/a.img', mode: 0o600, sizeBytes: 6 });
  for (const data of [Buffer.from('abc'), Buffer.from('def')])
    builder.add({ kind: 'chunk', digest: sha256(data), data });
  builder.add({ kind: 'file', path: 'b.img', mode: 0o644, sizeBytes: 3 });
  builder.add({ kind: 'chunk', digest: sha256(Buffer.from('abc')), data: Buffer.from('abc') });
  return builder.seal();
}

function thrownCode(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return errorCode(err);
  }
  return undefined;
}

function reseal(mutate: (m: Manifest) => void): ReturnType<typeof sealManifest> {
  const m = Manifest.decode(sample().bytes);
  mutate(m);
  return sealManifest(m);
}

describe('manifest', () => {
  it('round-trips and hashes reproducibly', () => {
    const a = sample();
    const b = sample();
    expect(a.digest).toBe(b.digest);
    expect(a.digest).toMatch(/^[0-9a-f]{64}$/);
    const opened = openManifest(a.bytes, a.digest);
    expect(opened.manifest.totalBytes).toBe(9);
    expect(opened.manifest.files.map((f) => f.path)).toEqual(['sub', 'sub/a.img', 'b.img']);
    expect(distinctChunks(opened.manifest).size).toBe(2);
  });

  it('refuses bytes that do not hash to the declared digest', () => {
    const a = sample();
    const tampered = Buffer.from(a.bytes);
    tampered.writeUInt8(tampered.readUInt8(tampered.length - 1) ^ 1, tampered.length - 1);
    expect(thrownCode(() => openManifest(tampered, a.digest))).toBe('NC_TRANSFER_MANIFEST_MISMATCH');
  });

  it.each([
    ['a parent-directory path', (m: Manifest) => void ((m.files[1] as { path: string }).path = '../escape')],
    ['an absolute path', (m: Manifest) => void ((m.files[1] as { path: string }).path = '/etc/passwd')],
    ['a duplicate path', (m: Manifest) => void ((m.files[2] as { path: string }).path = 'sub/a.img')],
    ['sizes that do not add up', (m: Manifest) => void ((m.files[1] as { sizeBytes: number }).sizeBytes = 7)],
    ['a wrong total', (m: Manifest) => void (m.totalBytes = 1)],
    [
      'digests and sizes of different counts',
      (m: Manifest) => void (m.files[1] as { chunkSizes: number[] }).chunkSizes.push(1),
    ],
    ['a file under a file', (m: Manifest) => void ((m.files[2] as { path: string }).path = 'sub/a.img/x')],
    // Found by `npm run fuzz` (#13): a peer could make the receiver write a setuid file.
    ['a setuid mode', (m: Manifest) => void ((m.files[1] as { mode: number }).mode = 0o4755)],
    ['a setgid mode', (m: Manifest) => void ((m.files[1] as { mode: number }).mode = 0o2755)],
  ])('refuses a manifest with %s, even when its digest matches', (_name, mutate) => {
    const bad = reseal(mutate);
    expect(thrownCode(() => openManifest(bad.bytes, bad.digest))).toBe('NC_TRANSFER_MANIFEST_INVALID');
  });

  it('refuses bytes that are not a manifest', () => {
    const junk = Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f]);
    const digest = sealManifest({ format: 1, files: [], totalBytes: 0 }).digest;
    expect(thrownCode(() => openManifest(junk, digest))).toBe('NC_TRANSFER_MANIFEST_MISMATCH');
    expect(thrownCode(() => openManifest(junk, createHash('sha256').update(junk).digest('hex')))).toBe(
      'NC_TRANSFER_MANIFEST_INVALID',
    );
  });
});
