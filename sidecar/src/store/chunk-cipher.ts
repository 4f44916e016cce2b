import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes } from 'node:crypto';
import { StoreError } from './errors';

const NONCE_BYTES = 12;
const TAG_BYTES = 16;
export const STORE_KEY_BYTES = 32;

/**
 * AES-256-GCM for everything the store writes, under keys derived from the node's one key. Each sealed
 * blob is bound (as associated data) to what it claims to be, so a chunk file swapped for another, or a
 * record moved to another name, fails authentication instead of restoring the wrong bytes.
 */
export class ChunkCipher {
  private readonly encryptionKey: Buffer;
  private readonly namingKey: Buffer;

  constructor(nodeKey: Buffer) {
    if (nodeKey.length !== STORE_KEY_BYTES) {
      throw new StoreError('NC_STORE_KEY_INVALID', `store key must be ${STORE_KEY_BYTES} bytes`, {
        context: { bytes: nodeKey.length },
      });
    }
    this.encryptionKey = Buffer.from(hkdfSync('sha256', nodeKey, Buffer.alloc(0), 'nomad-chain store encryption', 32));
    this.namingKey = Buffer.from(hkdfSync('sha256', nodeKey, Buffer.alloc(0), 'nomad-chain store naming', 32));
  }

  /** nonce ‖ ciphertext ‖ tag. `parts` are concatenated as plaintext without copying them first. */
  seal(parts: readonly Uint8Array[], aad: Uint8Array): Buffer {
    const nonce = randomBytes(NONCE_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.encryptionKey, nonce);
    cipher.setAAD(aad);
    const out = [nonce, ...parts.map((p) => cipher.update(p)), cipher.final(), cipher.getAuthTag()];
    return Buffer.concat(out);
  }

  /** Returns the plaintext, or undefined when the blob was altered, truncated or sealed for something else. */
  open(sealed: Buffer, aad: Uint8Array): Buffer | undefined {
    if (sealed.length < NONCE_BYTES + TAG_BYTES) return undefined;
    const decipher = createDecipheriv('aes-256-gcm', this.encryptionKey, sealed.subarray(0, NONCE_BYTES));
    decipher.setAAD(aad);
    decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
    try {
      return Buffer.concat([
        decipher.update(sealed.subarray(NONCE_BYTES, sealed.length - TAG_BYTES)),
        decipher.final(),
      ]);
    } catch {
      return undefined;
    }
  }

  /** File names are keyed hashes: the disk does not reveal which content (or which checkpoint id) it holds. */
  nameFor(kind: string, id: string | Uint8Array): string {
    return createHmac('sha256', this.namingKey).update(kind).update('\0').update(id).digest('hex');
  }
}
