import { mkdir, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { Server } from '@grpc/grpc-js';
import { bindServer } from '../../../common/grpc/server';
import { SidecarService } from '../../../proto/gen/chain/v1/sidecar';
import type { LocalApi } from './local-api';

/**
 * Serves the local API on a unix socket: only processes on this node that can open the socket (root, the
 * Nomad client and its plugin) reach it. A socket file left by a dead sidecar is replaced.
 */
export async function serveLocalApi(api: LocalApi, socketPath: string): Promise<Server> {
  await mkdir(dirname(socketPath), { recursive: true });
  await rm(socketPath, { force: true });
  const server = new Server();
  server.addService(SidecarService, api.handlers());
  await bindServer(server, `unix://${socketPath}`);
  return server;
}
