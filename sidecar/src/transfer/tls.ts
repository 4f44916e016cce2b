import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { ServerCredentials, credentials } from '@grpc/grpc-js';
import type { ChannelCredentials, ServerUnaryCall } from '@grpc/grpc-js';
import { TransferError } from './errors';

/** Where a node's transfer credentials live: PEM files made by scripts/gen-certs.sh or an operator's PKI. */
export interface TransferTlsFiles {
  readonly caFile: string;
  readonly certFile: string;
  readonly keyFile: string;
}

/** Checked PEM material of one node. Peers are identified by certificate: `nodeName` is its subject CN. */
export interface TransferTls {
  readonly ca: Buffer;
  readonly cert: Buffer;
  readonly key: Buffer;
  readonly nodeName: string;
}

function tlsError(problem: string, file: string, cause?: unknown): TransferError {
  return new TransferError('NC_TRANSFER_TLS_CONFIG', `transfer TLS material unusable: ${problem}`, {
    cause,
    context: { file },
  });
}

/** Reads and checks the files once at start-up, so a bad certificate stops the sidecar, not a migration. */
export async function loadTransferTls(files: TransferTlsFiles): Promise<TransferTls> {
  const read = async (file: string): Promise<Buffer> => {
    try {
      return await readFile(file);
    } catch (cause) {
      throw tlsError('cannot read file', file, cause);
    }
  };
  const [ca, cert, key] = await Promise.all([read(files.caFile), read(files.certFile), read(files.keyFile)]);
  return checkTransferTls({ ca, cert, key }, files);
}

export function checkTransferTls(pem: { ca: Buffer; cert: Buffer; key: Buffer }, files: TransferTlsFiles): TransferTls {
  let caCert: X509Certificate;
  let nodeCert: X509Certificate;
  try {
    caCert = new X509Certificate(pem.ca);
  } catch (cause) {
    throw tlsError('CA is not a PEM certificate', files.caFile, cause);
  }
  try {
    nodeCert = new X509Certificate(pem.cert);
  } catch (cause) {
    throw tlsError('certificate is not PEM', files.certFile, cause);
  }
  try {
    if (!nodeCert.checkPrivateKey(createPrivateKey(pem.key)))
      throw tlsError('key does not match the certificate', files.keyFile);
  } catch (cause) {
    if (cause instanceof TransferError) throw cause;
    throw tlsError('key is not a PEM private key', files.keyFile, cause);
  }
  if (!nodeCert.verify(caCert.publicKey)) throw tlsError('certificate is not signed by the CA', files.certFile);
  const now = Date.now();
  if (Date.parse(nodeCert.validTo) < now || Date.parse(nodeCert.validFrom) > now) {
    throw tlsError('certificate is outside its validity period', files.certFile);
  }
  const nodeName = /(?:^|\n)CN=([^\n]+)/.exec(nodeCert.subject)?.[1];
  if (nodeName === undefined) throw tlsError('certificate subject has no CN', files.certFile);
  return Object.freeze({ ca: pem.ca, cert: pem.cert, key: pem.key, nodeName });
}

/** Server side: a client certificate signed by the CA is required. */
export function serverCredentials(tls: TransferTls): ServerCredentials {
  return ServerCredentials.createSsl(tls.ca, [{ cert_chain: tls.cert, private_key: tls.key }], true);
}

/** Client side: the server's certificate must chain to the CA and name the address dialled (IP SAN or DNS). */
export function channelCredentials(tls: TransferTls): ChannelCredentials {
  return credentials.createSsl(tls.ca, tls.key, tls.cert);
}

/** The calling peer's node name, from the client certificate the TLS handshake verified. */
export function peerNodeName(call: Pick<ServerUnaryCall<unknown, unknown>, 'getAuthContext'>): string | undefined {
  const subject = call.getAuthContext()?.sslPeerCertificate?.subject;
  const cn = subject?.CN;
  return typeof cn === 'string' ? cn : Array.isArray(cn) ? cn[0] : undefined;
}
