import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { TaskError } from '../errors';

/** Who a task's first process runs as, inside its user namespace. */
export interface TaskUser {
  readonly uid: number;
  readonly gid: number;
  readonly additionalGids: readonly number[];
}

export const ROOT_USER: TaskUser = Object.freeze({ uid: 0, gid: 0, additionalGids: Object.freeze([]) });

interface PasswdEntry {
  readonly name: string;
  readonly uid: number;
  readonly gid: number;
}

interface GroupEntry {
  readonly name: string;
  readonly gid: number;
  readonly members: readonly string[];
}

/** The account databases of a task's root: its /etc/passwd and /etc/group. */
export interface AccountFiles {
  readonly passwd: string;
  readonly group: string;
}

const ID = /^\d+$/;

function parsePasswd(text: string): PasswdEntry[] {
  const entries: PasswdEntry[] = [];
  for (const line of text.split('\n')) {
    const [name, , uid, gid] = line.split(':');
    if (name === undefined || uid === undefined || gid === undefined || !ID.test(uid) || !ID.test(gid)) continue;
    entries.push({ name, uid: Number(uid), gid: Number(gid) });
  }
  return entries;
}

function parseGroup(text: string): GroupEntry[] {
  const entries: GroupEntry[] = [];
  for (const line of text.split('\n')) {
    const [name, , gid, members] = line.split(':');
    if (name === undefined || gid === undefined || !ID.test(gid)) continue;
    entries.push({ name, gid: Number(gid), members: (members ?? '').split(',').filter((m) => m !== '') });
  }
  return entries;
}

/**
 * Resolves Nomad's `user` ("name", "uid", "uid:gid", "name:group") against the task's own account files, as
 * the task's programs would: the root the task runs in decides who "www-data" is, not the node. A name also
 * brings the groups it is a member of. Ids must lie inside the task's user namespace (below `maxId`).
 */
export function resolveTaskUser(user: string, files: AccountFiles, maxId: number, taskId = ''): TaskUser {
  if (user === '' || user === 'root') return ROOT_USER;
  const [userPart = '', groupPart, extra] = user.split(':');
  const unknown = (what: string, name: string): TaskError =>
    new TaskError(
      'NC_TASK_USER_UNKNOWN',
      `${what} "${name}" is not in the task's ${what === 'user' ? 'passwd' : 'group'}`,
      {
        context: { user, taskId },
      },
    );
  if (userPart === '' || extra !== undefined || groupPart === '') {
    throw new TaskError('NC_TASK_SPEC_INVALID', `user "${user}" is not "name", "uid", "uid:gid" or "name:group"`, {
      context: { user, taskId },
    });
  }
  const passwd = parsePasswd(files.passwd);
  const groups = parseGroup(files.group);
  const entry = ID.test(userPart)
    ? passwd.find((e) => e.uid === Number(userPart))
    : passwd.find((e) => e.name === userPart);
  if (entry === undefined && !ID.test(userPart)) throw unknown('user', userPart);
  const uid = entry?.uid ?? Number(userPart);
  let gid: number;
  if (groupPart === undefined) {
    // A bare uid without an account gets group 0, as Docker and runc's own `user` handling do.
    gid = entry?.gid ?? 0;
  } else if (ID.test(groupPart)) {
    gid = Number(groupPart);
  } else {
    const group = groups.find((g) => g.name === groupPart);
    if (group === undefined) throw unknown('group', groupPart);
    gid = group.gid;
  }
  for (const [field, id] of [
    ['uid', uid],
    ['gid', gid],
  ] as const) {
    if (id >= maxId) {
      throw new TaskError('NC_TASK_SPEC_INVALID', `user "${user}": ${field} ${id} lies outside the task's id range`, {
        context: { user, taskId, maxId },
      });
    }
  }
  const additionalGids =
    entry === undefined
      ? []
      : groups
          .filter((g) => g.members.includes(entry.name) && g.gid !== gid && g.gid < maxId)
          .map((g) => g.gid)
          .sort((x, y) => x - y);
  return { uid, gid, additionalGids };
}

/** Reads a root's account files; a root without them knows only numeric ids. */
export async function readAccountFiles(rootfs: string): Promise<AccountFiles> {
  const read = (name: string): Promise<string> =>
    readFile(join(rootfs, 'etc', name), 'utf8').catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return '';
      throw err;
    });
  return { passwd: await read('passwd'), group: await read('group') };
}
