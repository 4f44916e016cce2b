import { resolveTaskUser } from '../../../../sidecar/src/runtime/task-user';

const files = {
  passwd: [
    'root:x:0:0:root:/root:/bin/bash',
    'www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin',
    'redis:x:70:70::/var/lib/redis:/usr/sbin/nologin',
    'nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin',
    'broken line',
  ].join('\n'),
  group: ['root:x:0:', 'www-data:x:33:', 'redis:x:70:', 'adm:x:4:redis,syslog', 'big:x:70000:redis'].join('\n'),
};

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return (err as { code?: string }).code;
  }
  return undefined;
}

describe('resolveTaskUser', () => {
  it('gives root for an empty user or "root"', () => {
    expect(resolveTaskUser('', files, 65536)).toEqual({ uid: 0, gid: 0, additionalGids: [] });
    expect(resolveTaskUser('root', files, 65536)).toEqual({ uid: 0, gid: 0, additionalGids: [] });
  });

  it("looks a name up in the task's passwd, with its primary group and memberships inside the range", () => {
    expect(resolveTaskUser('redis', files, 65536)).toEqual({ uid: 70, gid: 70, additionalGids: [4] });
    expect(resolveTaskUser('nobody', files, 65536)).toEqual({ uid: 65534, gid: 65534, additionalGids: [] });
  });

  it('takes numeric ids, with the account group when the uid has one and group 0 otherwise', () => {
    expect(resolveTaskUser('33', files, 65536)).toMatchObject({ uid: 33, gid: 33 });
    expect(resolveTaskUser('1234', files, 65536)).toEqual({ uid: 1234, gid: 0, additionalGids: [] });
    expect(resolveTaskUser('1234:99', files, 65536)).toEqual({ uid: 1234, gid: 99, additionalGids: [] });
    expect(resolveTaskUser('www-data:adm', files, 65536)).toMatchObject({ uid: 33, gid: 4 });
  });

  it('names an unknown user or group in a coded error', () => {
    expect(codeOf(() => resolveTaskUser('postgres', files, 65536))).toBe('NC_TASK_USER_UNKNOWN');
    expect(() => resolveTaskUser('postgres', files, 65536)).toThrow(/"postgres"/);
    expect(codeOf(() => resolveTaskUser('redis:wheel', files, 65536))).toBe('NC_TASK_USER_UNKNOWN');
    expect(() => resolveTaskUser('redis:wheel', files, 65536)).toThrow(/"wheel"/);
  });

  it('refuses malformed users and ids outside the user namespace', () => {
    expect(codeOf(() => resolveTaskUser('a:b:c', files, 65536))).toBe('NC_TASK_SPEC_INVALID');
    expect(codeOf(() => resolveTaskUser(':0', files, 65536))).toBe('NC_TASK_SPEC_INVALID');
    expect(codeOf(() => resolveTaskUser('70000', files, 65536))).toBe('NC_TASK_SPEC_INVALID');
    expect(codeOf(() => resolveTaskUser('nobody', files, 1000))).toBe('NC_TASK_SPEC_INVALID');
  });
});
