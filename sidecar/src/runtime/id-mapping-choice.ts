import { ConfigError } from '../../../common/config-error';
import type { UserNamespaceMode } from '../config';
import type { IdMapping, UserNamespaceSupport } from './user-namespace';

export interface IdMappingChoice {
  /** The tasks' user namespace, or undefined when they run in the node's. */
  readonly idMapping: IdMapping | undefined;
  /** Why tasks run without one when the operator left it to "auto" (worth a warning at start). */
  readonly withoutReason?: string;
}

/**
 * Whether this node's tasks get their own user namespace. "auto" follows the kernel; "on" refuses to start
 * without one, because an operator who asked for it relies on tasks that drop privileges being movable.
 */
export function chooseIdMapping(
  mode: UserNamespaceMode,
  mapping: IdMapping,
  support: UserNamespaceSupport | undefined,
): IdMappingChoice {
  if (mode === 'off') return { idMapping: undefined };
  if (support?.userNamespaces === true) return { idMapping: mapping };
  const why = `the kernel refused a user namespace (${support?.userNamespacesError ?? 'not probed'})`;
  if (mode === 'on') throw new ConfigError('userNamespace', `is "on" but ${why}`);
  return {
    idMapping: undefined,
    withoutReason: `${why}: tasks run in the node's user namespace, and one running as another user cannot be checkpointed${support?.sysResource === true ? '' : ' (no CAP_SYS_RESOURCE)'}`,
  };
}
