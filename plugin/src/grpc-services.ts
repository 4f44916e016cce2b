import type {
  handleBidiStreamingCall,
  handleServerStreamingCall,
  handleUnaryCall,
  Server,
  ServerDuplexStream,
  ServerErrorResponse,
} from '@grpc/grpc-js';
import { errorCode } from '../../common/errors';
import type { Logger } from '../../common/logging';
import { HealthStatus, healthService } from '../../common/grpc/health-service';
import { GRPCBrokerService } from '../../proto/gen/goplugin/grpc_broker';
import type { ConnInfo } from '../../proto/gen/goplugin/grpc_broker';
import { GRPCControllerService } from '../../proto/gen/goplugin/grpc_controller';
import type { GRPCControllerServer } from '../../proto/gen/goplugin/grpc_controller';
import { GRPCStdioService } from '../../proto/gen/goplugin/grpc_stdio';
import type { GRPCStdioServer } from '../../proto/gen/goplugin/grpc_stdio';
import { HealthService } from '../../proto/gen/grpc/health/v1/health';
import { BasePluginService } from '../../proto/gen/nomad/plugins/base/proto/base';
import type { BasePluginServer } from '../../proto/gen/nomad/plugins/base/proto/base';
import { DriverService } from '../../proto/gen/nomad/plugins/drivers/proto/driver';
import type {
  DriverServer,
  ExecTaskStreamingRequest,
  ExecTaskStreamingResponse,
} from '../../proto/gen/nomad/plugins/drivers/proto/driver';
import type { BasePlugin } from './base-plugin';
import type { ChainDriver } from './driver';
import { DriverError } from './errors';
import { toNomadStatus } from './grpc-status';

/**
 * Puts every service go-plugin's host and Nomad call on one gRPC server: grpc.health.v1 ("plugin"),
 * go-plugin's controller, broker and stdio, Nomad's BasePlugin and Driver. Handlers only adapt calls: each
 * error is mapped once, by toNomadStatus, and logged here, where it is handled.
 */
export function addPluginServices(
  server: Server,
  base: BasePlugin,
  driver: ChainDriver,
  lifetime: AbortSignal,
  onShutdownRequest: () => void,
  log: Logger,
): void {
  const adapt = new Adapter(lifetime, log);
  server.addService(HealthService, healthService(new HealthStatus({ plugin: true, '': true })));
  const controller: GRPCControllerServer = {
    shutdown(_call, done) {
      done(null, {});
      onShutdownRequest();
    },
  };
  server.addService(GRPCControllerService, controller);
  server.addService(GRPCBrokerService, { startStream: brokerStream(lifetime) });
  const stdio: GRPCStdioServer = {
    // The plugin writes nothing to stdout after the handshake, and logs go to stderr, which the host reads.
    streamStdio(call) {
      const end = (): void => {
        call.end();
      };
      if (lifetime.aborted) end();
      else lifetime.addEventListener('abort', end, { once: true });
      call.on('cancelled', () => lifetime.removeEventListener('abort', end));
    },
  };
  server.addService(GRPCStdioService, stdio);
  const baseServer: BasePluginServer = {
    pluginInfo: adapt.unary('PluginInfo', () => base.pluginInfo()),
    configSchema: adapt.unary('ConfigSchema', () => base.configSchema()),
    setConfig: adapt.unary('SetConfig', (request) => base.setConfig(request)),
  };
  server.addService(BasePluginService, baseServer);
  const driverServer: DriverServer = {
    taskConfigSchema: adapt.unary('TaskConfigSchema', () => driver.taskConfigSchema()),
    capabilities: adapt.unary('Capabilities', () => driver.capabilities()),
    fingerprint: adapt.stream('Fingerprint', (_request, signal) => driver.fingerprint(signal)),
    recoverTask: adapt.unary('RecoverTask', (request) => driver.recoverTask(request)),
    startTask: adapt.unary('StartTask', (request) => driver.startTask(request)),
    waitTask: adapt.unary('WaitTask', (request, signal) => driver.waitTask(request, signal)),
    stopTask: adapt.unary('StopTask', (request) => driver.stopTask(request)),
    destroyTask: adapt.unary('DestroyTask', (request) => driver.destroyTask(request)),
    inspectTask: adapt.unary('InspectTask', (request) => driver.inspectTask(request)),
    taskStats: adapt.stream('TaskStats', (request, signal) => driver.taskStats(request, signal)),
    taskEvents: adapt.stream('TaskEvents', (_request, signal) => driver.taskEvents(signal)),
    signalTask: adapt.unary('SignalTask', (request) => driver.signalTask(request)),
    execTask: adapt.unary('ExecTask', (request) => driver.execTask(request)),
    execTaskStreaming: execStreaming(driver, adapt),
    createNetwork: adapt.unary('CreateNetwork', () => driver.createNetwork()),
    destroyNetwork: adapt.unary('DestroyNetwork', () => driver.destroyNetwork()),
    init: adapt.unary('Init', () => driver.init()),
    shutdown: adapt.unary('Shutdown', () => driver.shutdown()),
  };
  server.addService(DriverService, driverServer);
}

class Adapter {
  constructor(
    private readonly lifetime: AbortSignal,
    private readonly log: Logger,
  ) {}

  unary<Req, Res>(
    rpc: string,
    fn: (request: Req, signal: AbortSignal) => Res | Promise<Res>,
  ): handleUnaryCall<Req, Res> {
    return (call, done) => {
      const cancelled = new AbortController();
      call.on('cancelled', () => cancelled.abort());
      const signal = AbortSignal.any([cancelled.signal, this.lifetime]);
      Promise.resolve()
        .then(() => fn(call.request, signal))
        .then(
          (response) => done(null, response),
          (err: unknown) => done(this.fail(rpc, err), null),
        );
    };
  }

  stream<Req, Res>(
    rpc: string,
    fn: (request: Req, signal: AbortSignal) => AsyncIterable<Res>,
  ): handleServerStreamingCall<Req, Res> {
    return (call) => {
      const cancelled = new AbortController();
      call.on('cancelled', () => cancelled.abort());
      const signal = AbortSignal.any([cancelled.signal, this.lifetime]);
      const run = async (): Promise<void> => {
        for await (const message of fn(call.request, signal)) {
          if (signal.aborted) break;
          call.write(message);
        }
      };
      run().then(
        () => {
          if (!cancelled.signal.aborted) call.end();
        },
        (err: unknown) => {
          if (!cancelled.signal.aborted) call.emit('error', this.fail(rpc, err));
        },
      );
    };
  }

  fail(rpc: string, err: unknown): ServerErrorResponse {
    const mapped = toNomadStatus(err);
    this.log.warn({ rpc, err, code: errorCode(err), grpcCode: mapped.code }, 'driver call failed');
    return mapped;
  }
}

/** go-plugin's host opens this stream at once and closes it when done; Nomad's drivers never broker. */
function brokerStream(lifetime: AbortSignal): handleBidiStreamingCall<ConnInfo, ConnInfo> {
  return (call) => {
    const end = (): void => {
      call.end();
    };
    call.on('data', () => undefined);
    call.on('end', end);
    lifetime.addEventListener('abort', end, { once: true });
    call.on('close', () => lifetime.removeEventListener('abort', end));
  };
}

/**
 * `nomad alloc exec` without a terminal: the first message names the command, which runs to completion in
 * the task's container (the sidecar's exec is not interactive); its output and exit come back as frames.
 */
function execStreaming(
  driver: ChainDriver,
  adapt: Adapter,
): handleBidiStreamingCall<ExecTaskStreamingRequest, ExecTaskStreamingResponse> {
  return (call: ServerDuplexStream<ExecTaskStreamingRequest, ExecTaskStreamingResponse>) => {
    let started = false;
    call.on('data', (request: ExecTaskStreamingRequest) => {
      if (started || request.setup === undefined) return;
      started = true;
      const setup = request.setup;
      const run = async (): Promise<void> => {
        if (setup.tty) {
          throw new DriverError(
            'NC_PLUGIN_UNSUPPORTED',
            'interactive exec with a terminal is not supported; use -t=false',
          );
        }
        const result = await driver.execTask({ taskId: setup.taskId, command: setup.command, timeout: undefined });
        if (result.stdout.length > 0) call.write(frame({ stdout: { data: result.stdout, close: false } }));
        if (result.stderr.length > 0) call.write(frame({ stderr: { data: result.stderr, close: false } }));
        call.write(frame({ stdout: { data: Buffer.alloc(0), close: true } }));
        call.write(frame({ stderr: { data: Buffer.alloc(0), close: true } }));
        call.write(frame({ exited: true, result: result.result }));
      };
      run().then(
        () => call.end(),
        (err: unknown) => call.emit('error', adapt.fail('ExecTaskStreaming', err)),
      );
    });
  };
}

function frame(parts: Partial<ExecTaskStreamingResponse>): ExecTaskStreamingResponse {
  return { stdout: undefined, stderr: undefined, exited: false, result: undefined, ...parts };
}
