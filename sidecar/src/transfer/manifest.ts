import { createHash } from 'node:crypto';
import { Manifest } from '../../../proto/gen/chain/v1/transfer';
import type { ManifestFile } from '../../../proto/gen/chain/v1/transfer';
import type { ChunkerEvent } from './chunker';
import { TransferError } from './errors';

export const MANIFEST_FORMAT = 1;
export const DIGEST_BYTES = 32;

/** A manifest with its canonical bytes and the checkpoint digest over them. */
export interface SealedManifest {
  readonly manifest: Manifest;
  readonly bytes: Buffer;
  /** Hex sha256 of `bytes`: the checkpoint's identity as content. */
  readonly digest: string;
}

/** Collects chunker events into a manifest; the bytes are encoded once, so the digest is reproducible. */
export class ManifestBuilder {
  private readonly files: ManifestFile[] = [];
  private current: { file: ManifestFile; digests: Buffer[] } | undefined;
  private totalBytes = 0;

  add(event: ChunkerEvent): void {
    switch (event.kind) {
      case 'directory':
        this.closeFile();
        this.files.push({
          path: event.path,
          mode: event.mode,
          sizeBytes: 0,
          chunkDigests: Buffer.alloc(0),
          chunkSizes: [],
          directory: true,
        });
        return;
      case 'file':
        this.closeFile();
        this.current = {
          file: {
            path: event.path,
            mode: event.mode,
            sizeBytes: event.sizeBytes,
            chunkDigests: Buffer.alloc(0),
            chunkSizes: [],
            directory: false,
          },
          digests: [],
        };
        return;
      case 'chunk':
        if (this.current === undefined) throw new RangeError('chunk before any file');
        this.current.digests.push(event.digest);
        this.current.file.chunkSizes.push(event.data.length);
        this.totalBytes += event.data.length;
        return;
    }
  }

  seal(): SealedManifest {
    this.closeFile();
    return sealManifest({ format: MANIFEST_FORMAT, files: this.files, totalBytes: this.totalBytes });
  }

  private closeFile(): void {
    if (this.current === undefined) return;
    this.current.file.chunkDigests = Buffer.concat(this.current.digests);
    this.files.push(this.current.file);
    this.current = undefined;
  }
}

export function sealManifest(manifest: Manifest): SealedManifest {
  const bytes = Buffer.from(Manifest.encode(manifest).finish());
  return { manifest, bytes, digest: manifestDigest(bytes) };
}

export function manifestDigest(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/**
 * Decodes manifest bytes received from a peer (or read back from disk) and checks them against the
 * declared digest and for internal consistency, before anything trusts a path or a size in them.
 */
export function openManifest(bytes: Buffer, expectedDigest: string): SealedManifest {
  const digest = manifestDigest(bytes);
  if (digest !== expectedDigest) {
    throw new TransferError(
      'NC_TRANSFER_MANIFEST_MISMATCH',
      'manifest does not hash to the declared checkpoint digest',
      {
        context: { expected: expectedDigest, actual: digest },
      },
    );
  }
  let manifest: Manifest;
  try {
    manifest = Manifest.decode(bytes);
  } catch (cause) {
    throw new TransferError('NC_TRANSFER_MANIFEST_INVALID', 'manifest does not decode', { cause });
  }
  validateManifest(manifest);
  return { manifest, bytes, digest };
}

function invalid(problem: string, path?: string): TransferError {
  return new TransferError('NC_TRANSFER_MANIFEST_INVALID', `manifest invalid: ${problem}`, { context: { path } });
}

export function validateManifest(manifest: Manifest): void {
  if (manifest.format !== MANIFEST_FORMAT) throw invalid(`unknown format ${manifest.format}`);
  const seen = new Set<string>();
  let total = 0;
  for (const file of manifest.files) {
    const parts = file.path.split('/');
    if (file.path === '' || file.path.includes('\0') || parts.some((p) => p === '' || p === '.' || p === '..')) {
      throw invalid('path is not a plain relative path', file.path);
    }
    if (seen.has(file.path)) throw invalid('path listed twice', file.path);
    seen.add(file.path);
    // Permission bits and the sticky bit only: a peer must never make this node write a setuid or setgid file.
    if (file.mode > 0o1777) throw invalid('mode out of range (permission and sticky bits only)', file.path);
    const count = file.chunkSizes.length;
    if (file.chunkDigests.length !== count * DIGEST_BYTES) throw invalid('chunk digests and sizes disagree', file.path);
    if (file.directory && (count > 0 || file.sizeBytes !== 0)) throw invalid('directory with content', file.path);
    const sum = file.chunkSizes.reduce((a, b) => a + b, 0);
    if (sum !== file.sizeBytes || file.chunkSizes.some((s) => s === 0))
      throw invalid('chunk sizes do not add up', file.path);
    total += sum;
  }
  if (total !== manifest.totalBytes) throw invalid('total size does not add up');
  const directories = new Set(manifest.files.filter((f) => f.directory).map((f) => f.path));
  for (const file of manifest.files) {
    const parts = file.path.split('/');
    for (let i = 1; i < parts.length; i += 1) {
      const parent = parts.slice(0, i).join('/');
      if (seen.has(parent) && !directories.has(parent)) throw invalid('path lies under a file', file.path);
    }
  }
}

/** A file's chunks as (digest, size) pairs, in order. */
export function* fileChunks(file: ManifestFile): Generator<{ digest: Buffer; size: number }> {
  for (let i = 0; i < file.chunkSizes.length; i += 1) {
    yield {
      digest: file.chunkDigests.subarray(i * DIGEST_BYTES, (i + 1) * DIGEST_BYTES),
      size: file.chunkSizes[i] as number,
    };
  }
}

/** Every distinct chunk of a manifest (hex digest → plain size). */
export function distinctChunks(manifest: Manifest): Map<string, number> {
  const chunks = new Map<string, number>();
  for (const file of manifest.files)
    for (const { digest, size } of fileChunks(file)) chunks.set(digest.toString('hex'), size);
  return chunks;
}
