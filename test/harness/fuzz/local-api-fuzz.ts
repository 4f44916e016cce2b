import { existsSync } from 'node:fs';
import { Metadata, credentials, makeGenericClientConstructor, status } from '@grpc/grpc-js';
import type { Client, ServiceError } from '@grpc/grpc-js';
import {
  CheckpointRequest,
  DeleteCheckpointRequest,
  DestroyTaskRequest,
  ExecTaskRequest,
  FeaturesRequest,
  FeaturesResponse,
  FindCheckpointRequest,
  ListCheckpointsRequest,
  ListTasksRequest,
  MigrateToPeerRequest,
  PrestageTaskRequest,
  RestoreTaskRequest,
  SidecarService,
  SignalTaskRequest,
  StartTaskRequest,
  StopTaskRequest,
  TaskRef,
  TaskSpec,
} from '../../../proto/gen/chain/v1/sidecar';
import type { MigrationMode } from '../../../proto/gen/chain/v1/sidecar';
import { ERROR_CODE_TRAILER } from '../../../common/grpc/status-codec';
import { BOUNDARY_INTS, OutcomeTally, Rng, mutateBytes } from './mutator';

/**
 * Fuzzes the sidecar's local API (`chain.v1.Sidecar` on its unix socket, the real LocalApi and runtime) with
 * random and byte-mutated valid messages on every RPC. Every answer must be success or a refusal carrying a
 * nomad-chain code (or grpc-js's own refusal of bytes that do not decode); a call that only waits (WaitTask,
 * FindCheckpoint with a wait) may run into the client's deadline. Afterwards the server must still answer an
 * honest Features call.
 *
 * The local API trusts its caller with host paths (only root reaches the socket): a task's directories are
 * bind-mounted and handed to the task's user. A mutated path could name the host's own directories, so inputs
 * whose decoded spec names a path outside the fuzzer's sandbox are withheld, counted, never sent. A
 * FindCheckpoint that would wait past the client's deadline is sent: its wait ends with the call.
 */

const identity = (b: Buffer): Buffer => b;
const RPCS = Object.keys(SidecarService) as (keyof typeof SidecarService)[];
type Rpc = (typeof RPCS)[number];
const definition = Object.fromEntries(
  Object.entries(SidecarService).map(([name, d]) => [
    name,
    {
      path: d.path,
      requestStream: false,
      responseStream: false,
      requestSerialize: identity,
      requestDeserialize: identity,
      responseSerialize: identity,
      responseDeserialize: identity,
    },
  ]),
);
const RawClient = makeGenericClientConstructor(definition, 'Sidecar');

/** Calls that may legitimately wait: a deadline there is the client giving up, not the server hanging. */
const WAITING: ReadonlySet<Rpc> = new Set(['waitTask', 'findCheckpoint', 'execTask', 'stopTask']);
const CALL_TIMEOUT_MS = 30_000;
const WAITING_TIMEOUT_MS = 1_500;

export interface LocalApiFuzzOptions {
  readonly iterations: number;
  readonly seed: number;
  /** The unix socket the real local API server listens on. */
  readonly socketPath: string;
  /** The only directory a fuzzed task spec may name (task directories are created and chowned there). */
  readonly sandbox: string;
  /** Paths no input may remove (the socket, the data directories): checked after every input. */
  readonly survivors: readonly string[];
}

interface Outcome {
  readonly label: string;
  readonly defect?: string;
}

function classify(rpc: Rpc, err: ServiceError | null | undefined): Outcome {
  if (!err) return { label: `accepted ${rpc}` };
  const code = err.metadata?.get(ERROR_CODE_TRAILER)[0];
  if (typeof code === 'string' && /^NC_[A-Z0-9_]+$/.test(code)) return { label: `refused ${code}` };
  if (err.code === status.INTERNAL && err.details === 'Error deserializing request')
    return { label: `undecodable ${rpc}` };
  if (err.code === status.DEADLINE_EXCEEDED && WAITING.has(rpc)) return { label: `waiting ${rpc} (client deadline)` };
  return { label: 'DEFECT', defect: `${rpc}: grpc ${err.code} without a code: ${err.details}` };
}

function taskId(rng: Rng): string {
  return rng.next() < 0.8
    ? `fuzz-${rng.int(8)}`
    : rng.pick(['', '../x', 'a/b', 'x'.repeat(300), '\u0000', '.', '..', '-rf', 'UPPER', 'é']);
}

function spec(rng: Rng, sandbox: string): TaskSpec {
  const argv = rng.pick([[], ['/nonexistent/nc-fuzz'], ['/nonexistent/nc-fuzz', '-x'], ['']]);
  return TaskSpec.fromPartial({
    argv,
    env: rng.next() < 0.5 ? {} : { A: 'b', '': 'x', 'B=C': 'd' },
    cwd: rng.pick(['', '/', 'relative', '/alloc']),
    allocDir: rng.next() < 0.8 ? '' : `${sandbox}/alloc-${rng.int(4)}`,
    memoryLimitBytes: rng.pick(BOUNDARY_INTS),
    cpuShares: rng.pick(BOUNDARY_INTS),
    user: rng.pick(['', 'root', 'nobody', '65534', 'no-such-user', '1:1']),
  });
}

function ident(rng: Rng): { taskId: string; allocId: string; taskName: string; jobId: string; namespace: string } {
  return { taskId: taskId(rng), allocId: 'alloc', taskName: 'app', jobId: 'job', namespace: 'default' };
}

function validRequest(rng: Rng, rpc: Rpc, sandbox: string): Uint8Array {
  const ms = (): number => rng.pick([0, 0, 0, 1, 100, ...BOUNDARY_INTS]);
  switch (rpc) {
    case 'features':
      return FeaturesRequest.encode({}).finish();
    case 'startTask':
      return StartTaskRequest.encode({ identity: ident(rng), spec: spec(rng, sandbox) }).finish();
    case 'stopTask':
      return StopTaskRequest.encode({
        taskId: taskId(rng),
        signal: rng.pick(['', 'SIGTERM', 'SIGBOGUS', '9']),
        timeoutMs: ms(),
      }).finish();
    case 'destroyTask':
      return DestroyTaskRequest.encode({ taskId: taskId(rng), force: rng.next() < 0.5 }).finish();
    case 'signalTask':
      return SignalTaskRequest.encode({
        taskId: taskId(rng),
        signal: rng.pick(['', 'SIGHUP', 'SIGBOGUS', '0', '-9']),
      }).finish();
    case 'execTask':
      return ExecTaskRequest.encode({
        taskId: taskId(rng),
        argv: rng.pick([[], ['/bin/true'], ['']]),
        timeoutMs: ms(),
      }).finish();
    case 'listTasks':
      return ListTasksRequest.encode({}).finish();
    case 'listCheckpoints':
      return ListCheckpointsRequest.encode({}).finish();
    case 'checkpoint':
      return CheckpointRequest.encode({
        taskId: taskId(rng),
        leaveRunning: rng.next() < 0.5,
        handoverKey: taskId(rng),
      }).finish();
    case 'migrateToPeer':
      return MigrateToPeerRequest.encode({
        taskId: taskId(rng),
        peerAddress: rng.pick(['', '127.0.0.1:1', 'not an address', '[::1]:99999']),
        mode: rng.pick([0, 1, 2, 3, 99, -1]) as MigrationMode,
        handoverKey: taskId(rng),
      }).finish();
    case 'findCheckpoint':
      return FindCheckpointRequest.encode({ handoverKey: taskId(rng), waitMs: ms() }).finish();
    case 'restoreTask':
      return RestoreTaskRequest.encode({
        identity: ident(rng),
        checkpointId: rng.pick(['fuzz-ckpt', '', '..', '.', '../../etc', 'a/b', 'x'.repeat(300)]),
        spec: spec(rng, sandbox),
      }).finish();
    case 'prestageTask':
      return PrestageTaskRequest.encode({ taskId: taskId(rng), peerAddress: '127.0.0.1:1' }).finish();
    case 'deleteCheckpoint':
      return DeleteCheckpointRequest.encode({
        checkpointId: rng.pick(['fuzz-ckpt', '', '..', '.', '/', '../x']),
      }).finish();
    default:
      return TaskRef.encode({ taskId: taskId(rng) }).finish();
  }
}

/** Whether a spec the server would decode from `body` names only paths inside the sandbox (or none). */
function staysInSandbox(rpc: Rpc, body: Buffer, sandbox: string): boolean {
  if (rpc !== 'startTask' && rpc !== 'restoreTask') return true;
  let decoded: TaskSpec | undefined;
  try {
    decoded = (rpc === 'startTask' ? StartTaskRequest : RestoreTaskRequest).decode(body).spec;
  } catch {
    return true; // the server cannot decode it either
  }
  if (decoded === undefined) return true;
  const paths = [
    decoded.allocDir,
    decoded.localDir,
    decoded.secretsDir,
    decoded.stdoutPath,
    decoded.stderrPath,
    decoded.rootfs,
    decoded.networkNamespace,
    ...Object.keys(decoded.binds),
    ...Object.values(decoded.binds),
  ];
  return paths.every((p) => p === '' || (p.startsWith(`${sandbox}/`) && !p.split('/').includes('..')));
}

function send(client: Client, rpc: Rpc, body: Buffer): Promise<Outcome> {
  const timeout = WAITING.has(rpc) ? WAITING_TIMEOUT_MS : CALL_TIMEOUT_MS;
  return new Promise((resolve) => {
    client.makeUnaryRequest(
      SidecarService[rpc].path,
      identity,
      identity,
      body,
      new Metadata(),
      { deadline: Date.now() + timeout },
      (err: ServiceError | null) => resolve(classify(rpc, err)),
    );
  });
}

/** An honest Features call through the generated decoder: the server is up and answers in full. */
export async function honestFeatures(socketPath: string): Promise<FeaturesResponse> {
  const client = new RawClient(`unix://${socketPath}`, credentials.createInsecure());
  try {
    return await new Promise((resolve, reject) => {
      client.makeUnaryRequest(
        SidecarService.features.path,
        identity,
        (b: Buffer) => FeaturesResponse.decode(b),
        Buffer.from(FeaturesRequest.encode({}).finish()),
        new Metadata(),
        { deadline: Date.now() + CALL_TIMEOUT_MS },
        (err: ServiceError | null, res?: FeaturesResponse) =>
          res && !err ? resolve(res) : reject(err ?? new Error('Features answered nothing')),
      );
    });
  } finally {
    client.close();
  }
}

export async function fuzzLocalApi(options: LocalApiFuzzOptions): Promise<OutcomeTally> {
  const tally = new OutcomeTally();
  const client = new RawClient(`unix://${options.socketPath}`, credentials.createInsecure());
  try {
    for (let i = 0; i < options.iterations; i += 1) {
      const rng = new Rng(options.seed * 1_000_003 + i);
      const rpc = rng.pick(RPCS);
      const roll = rng.next();
      const valid = Buffer.from(validRequest(rng, rpc, options.sandbox));
      const body = roll < 0.1 ? rng.bytes(rng.int(128)) : roll < 0.55 ? mutateBytes(rng, valid) : valid;
      if (!staysInSandbox(rpc, body, options.sandbox)) {
        tally.add('withheld (names a host path outside the sandbox)');
        continue;
      }
      const outcome = await send(client, rpc, body);
      if (outcome.defect !== undefined) tally.defect(`seed=${options.seed} iteration=${i}: ${outcome.defect}`);
      else tally.add(outcome.label);
      const gone = options.survivors.filter((p) => !existsSync(p));
      if (gone.length > 0) {
        // Every later input would meet a broken sidecar: the first one to do harm is the finding.
        tally.defect(`seed=${options.seed} iteration=${i}: ${rpc} removed ${gone.join(', ')}`);
        break;
      }
    }
    const features = await honestFeatures(options.socketPath).catch((err: unknown) => {
      tally.defect(`the honest Features call after fuzzing failed: ${String(err)}`);
      return undefined;
    });
    if (features !== undefined) tally.add(`honest Features after fuzzing (healthy=${String(features.healthy)})`);
    return tally;
  } finally {
    client.close();
  }
}
