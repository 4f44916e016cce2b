import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Metadata, credentials, status } from '@grpc/grpc-js';
import type { Server, ServiceError } from '@grpc/grpc-js';
import pino from 'pino';
import { SystemClock } from '../../../common/clock';
import { shutdownServer } from '../../../common/grpc/server';
import { SidecarClient } from '../../../proto/gen/chain/v1/sidecar';
import type { FindCheckpointResponse } from '../../../proto/gen/chain/v1/sidecar';
import { DirectoryStagedCheckpoints } from '../../../sidecar/src/checkpoint/staging';
import type { StagedCheckpoints } from '../../../sidecar/src/checkpoint/staging';
import { StoreStagedCheckpoints } from '../../../sidecar/src/checkpoint/transfer-adapters';
import { LocalApi } from '../../../sidecar/src/local-api/local-api';
import { serveLocalApi } from '../../../sidecar/src/local-api/server';
import { CheckpointStore } from '../../../sidecar/src/store/checkpoint-store';
import { eventually } from '../../harness/eventually';

// A FindCheckpoint whose caller has gone (issue #13): before, the sidecar went on waiting for the checkpoint
// for the call's whole wait (polling a directory every 100 ms, or holding a store waiter and its timer) after
// the caller had cancelled or its deadline had passed. Now the wait ends with the call. Real grpc-js local API
// server on a unix socket, over both kinds of staged checkpoints; a wait far past this tier's test timeout.
const WAIT_MS = 3_600_000;
const log = pino({ level: 'silent' });

/** What FindCheckpoint does not touch: reading any of it fails the test. */
const unused = new Proxy(
  {},
  {
    get: (_target, key) => {
      throw new Error(`FindCheckpoint used ${String(key)}`);
    },
  },
) as never;

describe('FindCheckpoint on the local API (real grpc-js server on a unix socket)', () => {
  let root: string;
  let store: CheckpointStore;
  const kinds: Record<string, () => StagedCheckpoints> = {
    directory: () => new DirectoryStagedCheckpoints(join(root, 'staged')),
    store: () => new StoreStagedCheckpoints(store),
  };

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'nc-find-cancel-'));
    store = await CheckpointStore.open({
      dir: join(root, 'store'),
      key: randomBytes(32),
      maxBytes: 1 << 30,
      logger: log,
    });
  });

  afterAll(async () => {
    await store?.close();
    await rm(root, { recursive: true, force: true });
  });

  async function serve(staged: StagedCheckpoints, name: string): Promise<{ server: Server; client: SidecarClient }> {
    const api = new LocalApi(
      { nodeName: 'n', transferAddress: '127.0.0.1:1', restoreDir: join(root, 'restore'), defaultStopTimeoutMs: 1000 },
      {
        runtime: unused,
        dumper: unused,
        restorer: unused,
        migrator: unused,
        prestager: unused,
        retained: unused,
        features: unused,
        staged,
        clock: new SystemClock(),
        log,
      },
    );
    const socket = join(root, `${name}.sock`);
    const server = await serveLocalApi(api, socket);
    return { server, client: new SidecarClient(`unix://${socket}`, credentials.createInsecure()) };
  }

  it.each(Object.keys(kinds))('stops waiting once the caller cancels the call (%s)', async (kind) => {
    const staged = (kinds[kind] as () => StagedCheckpoints)();
    const find = jest.spyOn(staged, 'find');
    const { server, client } = await serve(staged, `cancel-${kind}`);
    try {
      let cancel = (): void => undefined;
      const answered = new Promise<ServiceError | null>((resolve) => {
        const call = client.findCheckpoint(
          { handoverKey: 'never-filed', waitMs: WAIT_MS },
          (err: ServiceError | null, _res?: FindCheckpointResponse) => resolve(err),
        );
        cancel = () => call.cancel();
      });
      await eventually(() => (find.mock.calls.length > 0 ? Promise.resolve() : Promise.reject(new Error('not yet'))));
      cancel();
      expect((await answered)?.code).toBe(status.CANCELLED);
      // Before: this settled only after WAIT_MS, long past the test's timeout.
      await expect(find.mock.results[0]?.value).resolves.toBeUndefined();
    } finally {
      client.close();
      await shutdownServer(server, 500);
    }
  });

  it.each(Object.keys(kinds))("stops waiting once the caller's deadline passes (%s)", async (kind) => {
    const staged = (kinds[kind] as () => StagedCheckpoints)();
    const find = jest.spyOn(staged, 'find');
    const { server, client } = await serve(staged, `deadline-${kind}`);
    try {
      const err = await new Promise<ServiceError | null>((resolve) =>
        client.findCheckpoint(
          { handoverKey: 'never-filed', waitMs: WAIT_MS },
          new Metadata(),
          { deadline: Date.now() + 300 },
          (e: ServiceError | null) => resolve(e),
        ),
      );
      expect(err?.code).toBe(status.DEADLINE_EXCEEDED);
      await expect(find.mock.results[0]?.value).resolves.toBeUndefined();
    } finally {
      client.close();
      await shutdownServer(server, 500);
    }
  });
});
