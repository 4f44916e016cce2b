import type { Server } from '@grpc/grpc-js';
import { ServerCredentials } from '@grpc/grpc-js';

/** Binds a grpc-js server and resolves the bound port (0 = OS-chosen). */
export function bindServer(
  server: Server,
  address: string,
  credentials = ServerCredentials.createInsecure(),
): Promise<number> {
  return new Promise((resolve, reject) => {
    server.bindAsync(address, credentials, (err, port) => (err ? reject(err) : resolve(port)));
  });
}

/** Stops accepting calls and waits for those under way, but never longer than `graceMs`. */
export function shutdownServer(server: Server, graceMs: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, graceMs);
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}
