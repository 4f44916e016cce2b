import { DriverError } from './errors';

/**
 * The version of the driver_state schema stored in Nomad's TaskHandle (Nomad reserves 0). Bump it when the
 * shape changes, and keep reading the versions before it: Nomad hands back whatever an older plugin stored.
 */
export const TASK_STATE_VERSION = 2;

/** What the plugin must remember about a task to re-attach to it from a fresh process (RecoverTask). */
export interface TaskState {
  /** The task's id in the sidecar, which owns the running container. */
  readonly sidecarTaskId: string;
  readonly startedAtUnixMs: number;
  /** The checkpoint the task was restored from; "" for a cold start. */
  readonly restoredFromCheckpoint: string;
  /**
   * The task's `config {}` as Nomad sent it (msgpack). Nomad v1.6.5 does not persist the driver config of a
   * TaskConfig, so the handle it returns after a client restart has none: this copy is what recovery decodes.
   * Empty in version 1 states.
   */
  readonly msgpackDriverConfig: Buffer;
}

export function encodeTaskState(state: TaskState): Buffer {
  const { msgpackDriverConfig, ...rest } = state;
  return Buffer.from(
    JSON.stringify({ v: TASK_STATE_VERSION, ...rest, driverConfig: msgpackDriverConfig.toString('base64') }),
    'utf8',
  );
}

/** The versions this plugin reads: 1 (before the driver config was kept) and the current one. */
const READABLE_VERSIONS = [1, TASK_STATE_VERSION];

/** Reads a driver_state of any version this plugin has written; the handle's version is authoritative. */
export function decodeTaskState(version: number, bytes: Uint8Array): TaskState {
  if (!READABLE_VERSIONS.includes(version)) {
    throw invalid(
      `driver_state version ${version} is not one this plugin reads (it reads ${READABLE_VERSIONS.join(', ')})`,
    );
  }
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (cause) {
    throw invalid('driver_state is not valid JSON', cause);
  }
  if (typeof raw !== 'object' || raw === null) throw invalid('driver_state is not an object');
  const { sidecarTaskId, startedAtUnixMs, restoredFromCheckpoint, driverConfig } = raw as Record<string, unknown>;
  if (typeof sidecarTaskId !== 'string' || sidecarTaskId === '') throw invalid('driver_state lacks sidecarTaskId');
  if (typeof startedAtUnixMs !== 'number' || !Number.isFinite(startedAtUnixMs)) {
    throw invalid('driver_state lacks startedAtUnixMs');
  }
  if (typeof restoredFromCheckpoint !== 'string') throw invalid('driver_state lacks restoredFromCheckpoint');
  if (version >= 2 && typeof driverConfig !== 'string') throw invalid('driver_state lacks driverConfig');
  const msgpackDriverConfig = Buffer.from(typeof driverConfig === 'string' ? driverConfig : '', 'base64');
  return Object.freeze({ sidecarTaskId, startedAtUnixMs, restoredFromCheckpoint, msgpackDriverConfig });
}

function invalid(message: string, cause?: unknown): DriverError {
  return new DriverError('NC_PLUGIN_TASK_STATE_INVALID', message, cause === undefined ? {} : { cause });
}
