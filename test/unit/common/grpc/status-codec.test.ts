import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { credentials, Metadata, Server, ServerCredentials, status } from '@grpc/grpc-js';
import type { sendUnaryData, ServiceError, UntypedServiceImplementation } from '@grpc/grpc-js';
import { NomadChainError } from '../../../../common/errors';
import {
  CONTEXT_TRAILER,
  decodeStatus,
  encodeStatus,
  ERROR_CODE_TRAILER,
  PeerError,
} from '../../../../common/grpc/status-codec';
import { SidecarError } from '../../../../common/sidecar-api/errors';
import { SidecarClient, SidecarService } from '../../../../proto/gen/chain/v1/sidecar';

/** What a grpc-js client hands its callback for the status a server sent. */
function asReceived(sent: { code: status; details: string; metadata: Metadata }): ServiceError {
  return Object.assign(new Error(sent.details), sent);
}

describe('status codec', () => {
  it('round-trips code, message, recoverable and context, with the status the code maps to', () => {
    const sent = new NomadChainError('NC_CHECKPOINT_TRUNCATED', 'pages-1.img is short', {
      recoverable: true,
      context: { allocId: 'a1', sizeBytes: 4096, lazy: false, path: '/var/lib/nomad-chain/ckpt/ünïcode' },
    });
    const encoded = encodeStatus(sent);
    expect(encoded.code).toBe(status.DATA_LOSS);

    const received = decodeStatus(asReceived(encoded), { prefix: 'peer refused: ', context: { peer: 'b:7000' } });
    expect(received?.code).toBe('NC_CHECKPOINT_TRUNCATED');
    expect(received?.message).toBe('peer refused: pages-1.img is short');
    expect(received?.recoverable).toBe(true);
    expect(received?.grpcCode).toBe(status.DATA_LOSS);
    expect(received?.context).toEqual({ ...sent.context, peer: 'b:7000' });
    expect((received?.cause as ServiceError).code).toBe(status.DATA_LOSS);
  });

  it('sends a coded error that is not recoverable as such, and an unknown NC_ code as INTERNAL', () => {
    const encoded = encodeStatus(new NomadChainError('NC_SOMETHING_NEW', 'x'));
    expect(encoded.code).toBe(status.INTERNAL);
    const received = decodeStatus(asReceived(encoded));
    expect(received?.code).toBe('NC_SOMETHING_NEW');
    expect(received?.recoverable).toBe(false);
    expect(received?.context).toEqual({});
    expect(encoded.metadata?.get(CONTEXT_TRAILER)).toEqual([]);
  });

  it('sends an error without a code as INTERNAL with its message and no code; the client gets nothing to rebuild', () => {
    const encoded = encodeStatus(new Error('boom'));
    expect(encoded.code).toBe(status.INTERNAL);
    expect(encoded.details).toBe('boom');
    expect(encoded.metadata?.get(ERROR_CODE_TRAILER)).toEqual([]);
    expect(decodeStatus(asReceived(encoded))).toBeUndefined();
    expect(encodeStatus('a string').details).toBe('a string');
  });

  it('lets a server facing other hosts send its own code and a fixed message for an error without a code', () => {
    const encoded = encodeStatus(new TypeError('cannot read x of undefined'), {
      unexpected: { code: 'NC_TRANSFER_REMOTE', message: 'internal error' },
    });
    expect(encoded.details).toBe('internal error');
    expect(decodeStatus(asReceived(encoded))?.code).toBe('NC_TRANSFER_REMOTE');
  });

  it('relays a peer answer under the status the peer chose, but never one that means the channel failed', () => {
    expect(encodeStatus(new PeerError('NC_STORE_FULL', 'x', status.RESOURCE_EXHAUSTED)).code).toBe(
      status.RESOURCE_EXHAUSTED,
    );
    expect(encodeStatus(new SidecarError('NC_SIDECAR_CALL_FAILED', 'x', status.NOT_FOUND)).code).toBe(status.NOT_FOUND);
    expect(encodeStatus(new SidecarError('NC_SIDECAR_CALL_FAILED', 'x', status.UNAVAILABLE)).code).toBe(
      status.INTERNAL,
    );
  });

  it('reads no code from a foreign server (a code that is not NC_) and no context from a malformed trailer', () => {
    const metadata = new Metadata();
    metadata.set(ERROR_CODE_TRAILER, 'ENOENT');
    expect(decodeStatus(asReceived({ code: status.NOT_FOUND, details: 'x', metadata }))).toBeUndefined();
    metadata.set(ERROR_CODE_TRAILER, 'NC_TASK_NOT_FOUND');
    metadata.set(CONTEXT_TRAILER, Buffer.from('{not json'));
    expect(decodeStatus(asReceived({ code: status.NOT_FOUND, details: 'x', metadata }))?.context).toEqual({});
    metadata.set(CONTEXT_TRAILER, Buffer.from(JSON.stringify({ nested: { a: 1 }, ok: 'yes' })));
    expect(decodeStatus(asReceived({ code: status.NOT_FOUND, details: 'x', metadata }))?.context).toEqual({
      ok: 'yes',
    });
  });

  describe('over a real channel', () => {
    let dir: string;
    let server: Server | undefined;
    let client: SidecarClient | undefined;

    beforeEach(() => {
      dir = mkdtempSync(path.join(os.tmpdir(), 'nc-status-codec-'));
    });
    afterEach(() => {
      client?.close();
      server?.forceShutdown();
      rmSync(dir, { recursive: true, force: true });
    });

    it('keeps every field through grpc-js trailers', async () => {
      const socket = path.join(dir, 'codec.sock');
      const thrown = new NomadChainError('NC_TASK_NOT_RUNNING', 'task exited', {
        recoverable: true,
        context: { taskId: 't/1', exitCode: 3 },
      });
      server = new Server();
      const handlers: UntypedServiceImplementation = {
        features: (_call: unknown, callback: sendUnaryData<null>) => callback(encodeStatus(thrown), null),
      };
      server.addService(SidecarService, handlers);
      await new Promise<void>((resolve, reject) =>
        server?.bindAsync(`unix:${socket}`, ServerCredentials.createInsecure(), (err) =>
          err ? reject(err) : resolve(),
        ),
      );
      client = new SidecarClient(`unix:${socket}`, credentials.createInsecure());
      const err = await new Promise<ServiceError | null>((resolve) => client?.features({}, (e) => resolve(e)));
      expect(err?.code).toBe(status.FAILED_PRECONDITION);
      const received = decodeStatus(err as ServiceError);
      expect({
        code: received?.code,
        message: received?.message,
        recoverable: received?.recoverable,
        context: received?.context,
      }).toEqual({ code: thrown.code, message: thrown.message, recoverable: true, context: thrown.context });
    });
  });
});
