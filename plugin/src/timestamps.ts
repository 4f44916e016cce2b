import type { Duration } from '../../proto/gen/google/protobuf/duration';
import type { Timestamp } from '../../proto/gen/google/protobuf/timestamp';

export function timestampFromMs(ms: number): Timestamp {
  const seconds = Math.floor(ms / 1000);
  return { seconds, nanos: Math.round((ms - seconds * 1000) * 1_000_000) };
}

export function durationToMs(duration: Duration | undefined): number {
  if (duration === undefined) return 0;
  return duration.seconds * 1000 + Math.floor(duration.nanos / 1_000_000);
}
