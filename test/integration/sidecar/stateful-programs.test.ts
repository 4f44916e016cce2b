import type { Server } from '@grpc/grpc-js';
import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, readdir, rm, unlink, writeFile } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SystemClock } from '../../../common/clock';
import { shutdownServer } from '../../../common/grpc/server';
import type { SidecarClient } from '../../../proto/gen/chain/v1/sidecar';
import { MigrationMode, TaskSpec, TaskState } from '../../../proto/gen/chain/v1/sidecar';
import type { MigrateResult } from '../../../sidecar/src/checkpoint/migrate-to-peer';
import { LocalApi } from '../../../sidecar/src/local-api/local-api';
import { serveLocalApi } from '../../../sidecar/src/local-api/server';
import { call, codeOf, localClient } from './grpc-client';
import type { HarnessNode } from './node-harness';
import { eventually, handOverAndRestore, identity, inNetns, log, useTwoNodes } from './node-harness';

// Issue #10: a task's writable directories (/alloc, /local) travel with its memory, consistent at the
// freeze. Each case runs a real program from Debian (or Python's sqlite3) that keeps state both in memory
// and in files under /alloc, moves it from node A to node B, restores it into B's own empty directories,
// and checks that memory and files still agree there.

/** Commits a row every ~20 ms in WAL mode and counts them in memory; the status file is its answer. */
const SQLITE_WRITER = `
import json, os, sqlite3, time
token = os.urandom(8).hex()
db = sqlite3.connect('/alloc/data.db', isolation_level=None)
mode = db.execute('PRAGMA journal_mode=WAL').fetchone()[0]
db.execute('CREATE TABLE IF NOT EXISTS rows (n INTEGER PRIMARY KEY, at REAL NOT NULL)')
count = 0
while True:
    db.execute('BEGIN IMMEDIATE')
    db.execute('INSERT INTO rows (n, at) VALUES (?, ?)', (count + 1, time.time()))
    db.execute('COMMIT')
    count += 1
    rows, top = db.execute('SELECT count(*), max(n) FROM rows').fetchone()
    with open('/alloc/status.tmp', 'w') as f:
        json.dump({'pid': os.getpid(), 'token': token, 'mode': mode, 'count': count, 'rows': rows, 'max': top}, f)
    os.replace('/alloc/status.tmp', '/alloc/status')
    time.sleep(0.02)
`;

// The shell stays pid 1, so the writer's pid inside the task is one CRIU must restore, not init's.
const SQLITE_ARGV = ['/bin/sh', '-c', '/usr/bin/python3 /local/writer.py & wait'];

interface WriterStatus {
  readonly pid: number;
  readonly token: string;
  readonly mode: string;
  readonly count: number;
  readonly rows: number;
  readonly max: number;
}

const APACHE_PORT = 8080;

// Only what the test needs: Debian builds log_config and unixd into the binary (`apache2 -l`), so loading
// them again would only warn. The spare-server bounds are equal so prefork never replaces a worker.
const HTTPD_CONF = `
ServerRoot /usr/lib/apache2
ServerName stateful.test
LoadModule mpm_prefork_module modules/mod_mpm_prefork.so
LoadModule authz_core_module modules/mod_authz_core.so
LoadModule dir_module modules/mod_dir.so
LoadModule mime_module modules/mod_mime.so
Listen ${APACHE_PORT}
User www-data
Group www-data
PidFile /alloc/httpd.pid
DefaultRuntimeDir /alloc/run
ErrorLog /alloc/logs/error.log
LogFormat "%h %t \\"%r\\" %>s %b worker=%P" withpid
CustomLog /alloc/logs/access.log withpid
TypesConfig /etc/mime.types
DocumentRoot /local/htdocs
DirectoryIndex index.html
<Directory />
  Require all denied
</Directory>
<Directory /local/htdocs>
  Require all granted
</Directory>
StartServers 3
MinSpareServers 3
MaxSpareServers 3
MaxRequestWorkers 8
MaxConnectionsPerChild 0
`;

/** Writes to a file it deleted, and tells where to find it: the file lives on only as its descriptor. */
const GHOST_WRITER = `
import os, time
ghost = open('/alloc/ghost.log', 'w', buffering=1)
os.unlink('/alloc/ghost.log')
with open('/alloc/ghost-fd', 'w') as f:
    f.write(f'{os.getpid()} {ghost.fileno()}')
count = 0
while True:
    count += 1
    ghost.write(f'{count}\\n')
    with open('/alloc/count.tmp', 'w') as f:
        f.write(str(count))
    os.replace('/alloc/count.tmp', '/alloc/count')
    time.sleep(0.05)
`;

/** Holds an exclusive flock for its whole life and shows it is alive through a beating counter. */
const LOCK_HOLDER = `
import fcntl, os, time
lock = open('/alloc/held.lock', 'w')
fcntl.flock(lock, fcntl.LOCK_EX)
count = 0
while True:
    count += 1
    with open('/alloc/count.tmp', 'w') as f:
        f.write(str(count))
    os.replace('/alloc/count.tmp', '/alloc/count')
    time.sleep(0.05)
`;

/** Answers on a unix socket bound under /alloc with its pid, a per-process token and a live counter. */
const UNIX_SOCKET_SERVER = `
import os, socket, threading, time
token = os.urandom(8).hex()
count = 0
def tick():
    global count
    while True:
        count += 1
        time.sleep(0.05)
threading.Thread(target=tick, daemon=True).start()
srv = socket.socket(socket.AF_UNIX)
srv.bind('/alloc/app.sock')
srv.listen(8)
while True:
    c, _ = srv.accept()
    c.sendall(f'{os.getpid()} {token} {count}'.encode())
    c.close()
`;

// Debian's mariadb-server as its own user, its data directory under /alloc. The flags, each for a reason:
// --innodb-use-native-aio=0: Debian links mariadbd with liburing, and CRIU 4.2 cannot dump an io_uring
//   ("Unknown shit 600 (anon_inode:[io_uring])"); InnoDB's own I/O threads are dumped like any thread.
// --tmpdir: /tmp in a user-namespaced task belongs to the task's root (0755), mysql cannot write there.
// --innodb-flush-log-at-trx-commit=0 --innodb-flush-log-at-timeout=2700: commits are not written to the
//   redo log file at commit nor every second, so the rows committed last exist only in the server's memory
//   at the freeze: they survive only if memory moves with the files.
// --skip-name-resolve: the task has no resolver for its own hostname.
const MARIADB_START = `set -e
mkdir -p /alloc/tmp /alloc/mysqld
chown mysql:mysql /alloc/tmp /alloc/mysqld
mariadb-install-db --no-defaults --user=mysql --datadir=/alloc/db --auth-root-authentication-method=socket \\
  --skip-test-db --skip-name-resolve --tmpdir=/alloc/tmp >/alloc/install.log 2>&1
exec mariadbd --no-defaults --user=mysql --datadir=/alloc/db --tmpdir=/alloc/tmp \\
  --socket=/alloc/mysqld/mysqld.sock --port=3307 --bind-address=0.0.0.0 \\
  --pid-file=/alloc/mysqld/mysqld.pid --log-error=/alloc/mysqld/mysqld.err \\
  --innodb-use-native-aio=0 --innodb-flush-log-at-trx-commit=0 --innodb-flush-log-at-timeout=2700 \\
  --skip-name-resolve
`;

// Real runc and CRIU with real servers on a loaded 2-core machine: generous, never a performance assertion.
jest.setTimeout(300_000);

/** Runs a program on the node itself (not in a task) and resolves with its stdout. */
function run(argv: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(argv[0] ?? '', argv.slice(1), { timeout: 20_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${argv.join(' ')} failed: ${stderr || err.message}`));
      else resolve(stdout);
    });
  });
}

/** Whether `flock -n` on the node gets the lock at once (it exits 1 when another holder has it). */
async function lockFree(path: string): Promise<boolean> {
  return run(['flock', '-n', path, 'true']).then(
    () => true,
    () => false,
  );
}

/** Connects to a unix socket file and reads the answer until the server closes. */
function askUnixSocket(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let answer = '';
    const socket = createConnection({ path });
    socket.setTimeout(5000, () => socket.destroy(new Error(`no answer on ${path}`)));
    socket.on('data', (d: Buffer) => (answer += d.toString()));
    socket.on('end', () => resolve(answer));
    socket.on('error', reject);
  });
}

interface TaskProcess {
  /** Its pid inside the task's pid namespace. */
  readonly pid: number;
  readonly comm: string;
  /** Its uid on the node (the task's ids are shifted by its user namespace). */
  readonly hostUid: number;
}

/** The task's processes as the node sees them, with the pid each has inside the task. */
async function taskProcesses(node: HarnessNode, taskId: string): Promise<TaskProcess[]> {
  const hostPids = await node.runc.pids((await node.runtime.inspect(taskId)).record.containerId);
  const processes = await Promise.all(
    hostPids.map(async (hostPid) => {
      const status = await readFile(`/proc/${hostPid}/status`, 'utf8');
      const nsPids = /^NSpid:\s+(.*)$/m.exec(status)?.[1]?.trim().split(/\s+/) ?? [];
      return {
        pid: Number(nsPids[nsPids.length - 1]),
        comm: /^Name:\s+(.*)$/m.exec(status)?.[1] ?? '',
        hostUid: Number(/^Uid:\s+(\d+)/m.exec(status)?.[1]),
      };
    }),
  );
  return processes.sort((x, y) => x.pid - y.pid);
}

describe('stateful programs move with their files (real runc + CRIU)', () => {
  const nodes = useTwoNodes('sp');
  let a: HarnessNode;
  let b: HarnessNode;
  beforeAll(() => {
    ({ a, b } = nodes);
  });

  /** A fresh empty directory on a node, for a task's /alloc or /local. */
  async function freshDir(node: HarnessNode, kind: 'allocs' | 'locals', name: string): Promise<string> {
    const dir = join(node.root, kind, name);
    await mkdir(dir, { recursive: true });
    return dir;
  }

  /** Starts a task on A with its own /alloc and /local, after `prepare` filled them. */
  async function startOnA(
    taskId: string,
    argv: readonly string[],
    prepare: (alloc: string, local: string) => Promise<void>,
  ): Promise<{ alloc: string; local: string; spec: TaskSpec }> {
    const alloc = await freshDir(a, 'allocs', taskId);
    const local = await freshDir(a, 'locals', taskId);
    await prepare(alloc, local);
    const spec = TaskSpec.fromPartial({ argv: [...argv], allocDir: alloc, localDir: local });
    await a.runtime.start(identity(taskId), spec);
    return { alloc, local, spec };
  }

  interface Moved {
    readonly alloc: string;
    readonly local: string;
    readonly handedOver: MigrateResult;
  }

  /**
   * Hands a task from A to B (stop-and-copy) and restores it there into B's own empty /alloc and /local:
   * whatever the program finds in them on B came in the checkpoint.
   */
  async function move(taskId: string): Promise<Moved> {
    const alloc = await freshDir(b, 'allocs', `${taskId}-b`);
    const local = await freshDir(b, 'locals', `${taskId}-b`);
    const handedOver = await handOverAndRestore(
      a,
      b,
      taskId,
      TaskSpec.fromPartial({ allocDir: alloc, localDir: local }),
    );
    // The target runs the task: the source's copy for a rollback has served its purpose (the migration's
    // clean-up does the same).
    await a.retained.release(handedOver.meta.checkpointId);
    expect(handedOver.meta.fileTree?.totalBytes).toBeGreaterThan(0);
    return { alloc, local, handedOver };
  }

  const readStatus = async (alloc: string): Promise<WriterStatus> =>
    JSON.parse(await readFile(join(alloc, 'status'), 'utf8')) as WriterStatus;

  const readCount = async (alloc: string): Promise<number> => Number(await readFile(join(alloc, 'count'), 'utf8'));

  /** Waits until the program's counter in `alloc` passes `than`: it runs (again). */
  const countAbove = (alloc: string, than: number): Promise<number> =>
    eventually(async () => {
      const n = await readCount(alloc);
      if (!(n > than)) throw new Error(`count ${n}, waiting for more than ${than}`);
      return n;
    });

  it('SQLite in WAL mode moves with its database: no committed row lost, the writer counts on', async () => {
    const { alloc } = await startOnA('sqlite', SQLITE_ARGV, (_alloc, local) =>
      writeFile(join(local, 'writer.py'), SQLITE_WRITER),
    );
    await eventually(async () => {
      if (!((await readStatus(alloc)).count > 20)) throw new Error('not yet');
    });
    const running = await readStatus(alloc);
    expect(running.mode).toBe('wal');
    expect(running.pid).not.toBe(1);
    expect((await readdir(alloc)).sort()).toEqual(expect.arrayContaining(['data.db', 'data.db-shm', 'data.db-wal']));

    const moved = await move('sqlite');
    // What A's writer had committed and reported when it froze.
    const last = await readStatus(alloc);
    expect(await readFile(join(moved.local, 'writer.py'), 'utf8')).toBe(SQLITE_WRITER);
    const resumed = await eventually(async () => {
      const status = await readStatus(moved.alloc);
      if (!(status.count > last.count)) throw new Error(`count ${status.count}, waiting for more than ${last.count}`);
      return status;
    });
    expect(resumed).toMatchObject({ pid: last.pid, token: last.token, mode: 'wal' });
    // n is the primary key and runs 1..count: count(*) = max(n) = count means no row is missing, and the
    // in-memory count (from A's memory) agrees with the database (from A's files) on B.
    expect(resumed.rows).toBe(resumed.count);
    expect(resumed.max).toBe(resumed.count);

    await b.runtime.stop('sqlite-b', 'SIGKILL', 5000);
    // The database on B read by another program, from a copy: every row up to A's last count is there.
    const copy = await mkdtemp(join(tmpdir(), 'sqlite-copy-'));
    try {
      for (const name of ['data.db', 'data.db-wal']) await copyFile(join(moved.alloc, name), join(copy, name));
      const [rows, min, max] = (
        await run(['sqlite3', join(copy, 'data.db'), 'SELECT count(*), min(n), max(n) FROM rows'])
      )
        .trim()
        .split('|')
        .map(Number);
      expect(min).toBe(1);
      expect(rows).toBe(max);
      expect(rows).toBeGreaterThanOrEqual(resumed.count);
    } finally {
      await rm(copy, { recursive: true, force: true });
    }
  });

  it("Apache httpd's parent and prefork workers move with their logs and keep answering", async () => {
    const { alloc } = await startOnA(
      'apache',
      ['/usr/sbin/apache2', '-DFOREGROUND', '-f', '/local/httpd.conf'],
      async (allocDir, local) => {
        await writeFile(join(local, 'httpd.conf'), HTTPD_CONF);
        await mkdir(join(local, 'htdocs'));
        await writeFile(join(local, 'htdocs', 'index.html'), 'hello from apache\n');
        await mkdir(join(allocDir, 'logs'));
        await mkdir(join(allocDir, 'run'));
      },
    );
    const get = (from: HarnessNode, to: HarnessNode, path: string) =>
      inNetns(from.net?.netnsPath ?? '', [
        'curl',
        '-sf',
        '--max-time',
        '5',
        `http://${to.net?.address ?? ''}:${APACHE_PORT}${path}`,
      ]);
    expect(await eventually(() => get(b, a, '/?before=0'))).toBe('hello from apache\n');
    for (let i = 1; i <= 5; i++) await get(b, a, `/?before=${i}`);
    const apacheOf = async (node: HarnessNode, taskId: string) =>
      (await taskProcesses(node, taskId)).filter((p) => p.comm === 'apache2');
    // Three idle workers once prefork has started them all.
    const before = await eventually(async () => {
      const processes = await apacheOf(a, 'apache');
      if (processes.length !== 4) throw new Error(`${processes.length} apache2 processes`);
      return processes;
    });
    const parentPid = Number(await readFile(join(alloc, 'httpd.pid'), 'utf8'));
    const workers = before.filter((p) => p.pid !== parentPid);
    // The parent as the task's root, the workers as www-data (33), both shifted by the user namespace.
    expect(before.find((p) => p.pid === parentPid)?.hostUid).toBe(100_000);
    expect(workers.map((p) => p.hostUid)).toEqual([100_033, 100_033, 100_033]);
    const logBefore = await eventually(async () => {
      const text = await readFile(join(alloc, 'logs', 'access.log'), 'utf8');
      if (!text.includes('before=5')) throw new Error('last request not logged yet');
      return text;
    });

    const moved = await move('apache');
    expect(await eventually(() => get(a, b, '/?after=0'))).toBe('hello from apache\n');
    for (let i = 1; i <= 5; i++) expect(await get(a, b, `/?after=${i}`)).toBe('hello from apache\n');
    const after = await apacheOf(b, 'apache-b');
    expect(after.map((p) => [p.pid, p.hostUid])).toEqual(before.map((p) => [p.pid, p.hostUid]));
    expect(Number(await readFile(join(moved.alloc, 'httpd.pid'), 'utf8'))).toBe(parentPid);

    // Apache appends to the log it had open on A: the earlier lines, then the new requests, each served by
    // one of A's workers.
    const logAfter = await eventually(async () => {
      const text = await readFile(join(moved.alloc, 'logs', 'access.log'), 'utf8');
      if (!text.includes('after=5')) throw new Error('last request not logged yet');
      return text;
    });
    expect(logAfter.startsWith(logBefore)).toBe(true);
    const newLines = logAfter.slice(logBefore.length).trim().split('\n');
    for (let i = 1; i <= 5; i++) expect(newLines.filter((l) => l.includes(`GET /?after=${i} `))).toHaveLength(1);
    const servedBy = new Set(newLines.map((l) => Number(/worker=(\d+)$/.exec(l)?.[1])));
    for (const pid of servedBy) expect(workers.map((w) => w.pid)).toContain(pid);
    await b.runtime.stop('apache-b', 'SIGKILL', 5000);
  });

  describe('open files the kernel must recreate', () => {
    it('a deleted file held open moves with its content and is written on', async () => {
      const { alloc } = await startOnA('ghost', ['/usr/bin/python3', '/local/ghost.py'], (_alloc, local) =>
        writeFile(join(local, 'ghost.py'), GHOST_WRITER),
      );
      await countAbove(alloc, 10);
      const moved = await move('ghost');
      const last = await readCount(alloc);
      const resumed = await countAbove(moved.alloc, last);
      // Still deleted on B: it exists only as the restored process's descriptor.
      expect(await readdir(moved.alloc)).not.toContain('ghost.log');
      const [pid, fd] = (await readFile(join(moved.alloc, 'ghost-fd'), 'utf8')).split(' ');
      const read = await b.runtime.exec('ghost-b', ['/bin/cat', `/proc/${pid}/fd/${fd}`], 20_000);
      expect(read.exitCode).toBe(0);
      const lines = String(read.stdout).trim().split('\n').map(Number);
      // Every line A wrote, then B's, without a gap or a repeat.
      expect(lines.length).toBeGreaterThanOrEqual(resumed);
      expect(lines).toEqual(lines.map((_, i) => i + 1));
      await b.runtime.stop('ghost-b', 'SIGKILL', 5000);
    });

    it('a file under flock stays locked by the restored process', async () => {
      const { alloc } = await startOnA('flock', ['/usr/bin/python3', '/local/lock.py'], (_alloc, local) =>
        writeFile(join(local, 'lock.py'), LOCK_HOLDER),
      );
      await countAbove(alloc, 5);
      expect(await lockFree(join(alloc, 'held.lock'))).toBe(false);
      const moved = await move('flock');
      await countAbove(moved.alloc, await readCount(alloc));
      // Another process on B, inside the task and on the node, cannot take it.
      const inTask = await b.runtime.exec('flock-b', ['flock', '-n', '/alloc/held.lock', 'true'], 20_000);
      expect(inTask.exitCode).toBe(1);
      expect(await lockFree(join(moved.alloc, 'held.lock'))).toBe(false);
      // And it was the restored process that held it: once it is gone, the lock is free.
      await b.runtime.stop('flock-b', 'SIGKILL', 5000);
      await eventually(async () => {
        if (!(await lockFree(join(moved.alloc, 'held.lock')))) throw new Error('still locked');
      });
    });

    it('a listening unix socket under /alloc answers through its file on B', async () => {
      const { alloc } = await startOnA('unix', ['/usr/bin/python3', '/local/server.py'], (_alloc, local) =>
        writeFile(join(local, 'server.py'), UNIX_SOCKET_SERVER),
      );
      const [pid, token, count] = (await eventually(() => askUnixSocket(join(alloc, 'app.sock')))).split(' ');
      const moved = await move('unix');
      const answer = await eventually(async () => {
        const parts = (await askUnixSocket(join(moved.alloc, 'app.sock'))).split(' ');
        if (!(Number(parts[2]) > Number(count))) throw new Error(`counter ${parts[2]} not past ${count}`);
        return parts;
      });
      expect(answer.slice(0, 2)).toEqual([pid, token]);
      await b.runtime.stop('unix-b', 'SIGKILL', 5000);
    });
  });

  it('MariaDB keeps rows committed but not yet flushed, and is not restarted (its uptime goes on)', async () => {
    await startOnA('mariadb', ['/bin/sh', '/local/start.sh'], (_alloc, local) =>
      writeFile(join(local, 'start.sh'), MARIADB_START),
    );
    const sql = async (node: HarnessNode, taskId: string, query: string): Promise<string[]> => {
      const result = await node.runtime.exec(
        taskId,
        ['mariadb', '--no-defaults', '-S', '/alloc/mysqld/mysqld.sock', '-u', 'root', '-N', '-B', '-e', query],
        30_000,
      );
      if (result.exitCode !== 0) throw new Error(`mariadb: ${String(result.stderr)}`);
      return String(result.stdout).trim().split('\n');
    };
    const status = async (node: HarnessNode, taskId: string, name: string): Promise<number> =>
      Number((await sql(node, taskId, `SHOW GLOBAL STATUS LIKE '${name}'`))[0]?.split('\t')[1]);
    // Installing the system tables and starting InnoDB takes a while on two busy cores.
    await eventually(() => sql(a, 'mariadb', 'SELECT 1'), 180_000, 500);
    await sql(a, 'mariadb', 'CREATE DATABASE app; CREATE TABLE app.t (n INT PRIMARY KEY, v VARCHAR(40)) ENGINE=InnoDB');
    const insertBatch = (batch: number) => {
      const values = Array.from({ length: 50 }, (_, i) => `(${batch * 50 + i + 1}, 'v${batch * 50 + i + 1}')`);
      return sql(a, 'mariadb', `START TRANSACTION; INSERT INTO app.t VALUES ${values.join(',')}; COMMIT`);
    };
    /** InnoDB's redo log: how far it was written in memory, and how far flushed to the log file. */
    const redo = async (node: HarnessNode, taskId: string) => {
      const text = (await sql(node, taskId, 'SHOW ENGINE INNODB STATUS')).join('\n').replace(/\\n/g, '\n');
      return {
        written: Number(/Log sequence number\s+(\d+)/.exec(text)?.[1]),
        flushed: Number(/Log flushed up to\s+(\d+)/.exec(text)?.[1]),
      };
    };
    for (let batch = 0; batch < 3; batch++) await insertBatch(batch);
    const server = (await taskProcesses(a, 'mariadb')).filter((p) => p.comm === 'mariadbd');
    expect(server).toHaveLength(1);
    // As mysql, shifted by the task's user namespace.
    const mysqlUid = Number((await run(['id', '-u', 'mysql'])).trim());
    expect(server[0]?.hostUid).toBe(100_000 + mysqlUid);
    const uptimeBefore = await status(a, 'mariadb', 'Uptime');
    const connectionsBefore = await status(a, 'mariadb', 'Connections');
    // The last commits are in the server's memory only: the log file on disk does not hold them yet. InnoDB
    // still flushes now and then on its own (a checkpoint, the page cleaner): commit again until caught before.
    let batches = 3;
    let redoBefore = { written: 0, flushed: 0 };
    for (let tries = 0; tries < 5 && !(redoBefore.flushed < redoBefore.written); tries++) {
      await insertBatch(batches++);
      redoBefore = await redo(a, 'mariadb');
    }
    expect(redoBefore.flushed).toBeLessThan(redoBefore.written);
    const rows = batches * 50;

    await move('mariadb');
    await eventually(() => sql(b, 'mariadb-b', 'SELECT 1'), 60_000, 500);
    expect(await sql(b, 'mariadb-b', 'SELECT count(*), sum(n) FROM app.t')).toEqual([
      `${rows}\t${(rows * (rows + 1)) / 2}`,
    ]);
    // Same process: a restarted server would start its uptime and connection count from zero.
    expect((await taskProcesses(b, 'mariadb-b')).filter((p) => p.comm === 'mariadbd')).toEqual(server);
    expect(await status(b, 'mariadb-b', 'Uptime')).toBeGreaterThanOrEqual(uptimeBefore);
    expect(await status(b, 'mariadb-b', 'Connections')).toBeGreaterThan(connectionsBefore);
    await sql(b, 'mariadb-b', `INSERT INTO app.t VALUES (${rows + 1}, 'after the move')`);
    expect(await sql(b, 'mariadb-b', 'SELECT count(*) FROM app.t')).toEqual([`${rows + 1}`]);
    await b.runtime.stop('mariadb-b', 'SIGKILL', 5000);
  });

  describe('a restore that fails on the target after the freeze', () => {
    let servers: Server[] = [];
    let clients: SidecarClient[] = [];

    /** The node's local API, as the migration's journal drives it: restore by checkpoint id. */
    async function api(node: HarnessNode): Promise<SidecarClient> {
      const local = new LocalApi(
        {
          nodeName: node.name,
          transferAddress: `${node.net?.address ?? ''}:7450`,
          restoreDir: join(node.root, 'restore'),
          defaultStopTimeoutMs: 2000,
        },
        { ...node, features: () => node.features, clock: new SystemClock(), log },
      );
      const socket = join(node.root, 'sidecar.sock');
      servers.push(await serveLocalApi(local, socket));
      const client = localClient(socket);
      clients.push(client);
      return client;
    }

    afterAll(async () => {
      for (const client of clients) client.close();
      for (const server of servers) await shutdownServer(server, 1000);
      servers = [];
      clients = [];
    });

    it('puts the task back on the source from the copy the source kept, its state intact', async () => {
      const apiA = await api(a);
      const apiB = await api(b);
      const { alloc, spec } = await startOnA('fault', SQLITE_ARGV, (_alloc, local) =>
        writeFile(join(local, 'writer.py'), SQLITE_WRITER),
      );
      await eventually(async () => {
        if (!((await readStatus(alloc)).count > 20)) throw new Error('not yet');
      });
      const handedOver = await a.migrator.migrate({
        taskId: 'fault',
        peerAddress: `${b.net?.address ?? ''}:7450`,
        mode: MigrationMode.MIGRATION_MODE_STOP_AND_COPY,
        handoverKey: 'fault-next',
      });
      const { checkpointId } = handedOver.meta;
      const last = await readStatus(alloc);
      expect(await a.retained.path(checkpointId)).toBeDefined();

      // The checkpoint reached B whole; then B loses one of its memory images, as a failing disk would.
      const images = join(b.root, 'staged', checkpointId, 'images');
      const pages = (await readdir(images)).find((name) => name.startsWith('pages-'));
      if (pages === undefined) throw new Error(`no pages image in ${images}`);
      await unlink(join(images, pages));
      const failed = await call(apiB.restoreTask.bind(apiB), {
        identity: identity('fault-b'),
        checkpointId,
        spec: TaskSpec.fromPartial({ allocDir: await freshDir(b, 'allocs', 'fault-b') }),
      }).catch((err: unknown) => err);
      expect(codeOf(failed)).toBe('NC_CHECKPOINT_TRUNCATED');
      expect(b.runtime.list().filter((t) => t.taskId === 'fault-b' && t.phase === 'running')).toEqual([]);

      // The rollback: A restores the same checkpoint id into the task's own directories.
      const restored = await call(apiA.restoreTask.bind(apiA), { identity: identity('fault'), checkpointId, spec });
      expect(restored).toMatchObject({ state: TaskState.TASK_STATE_RUNNING, restoredFromCheckpoint: checkpointId });
      const resumed = await eventually(async () => {
        const status = await readStatus(alloc);
        if (!(status.count > last.count)) throw new Error(`count ${status.count}, waiting for more than ${last.count}`);
        return status;
      });
      expect(resumed).toMatchObject({ pid: last.pid, token: last.token });
      expect(resumed.rows).toBe(resumed.count);
      expect(resumed.max).toBe(resumed.count);
      // Restored once: the source's copy is released.
      expect(await a.retained.path(checkpointId)).toBeUndefined();
      await a.runtime.stop('fault', 'SIGKILL', 5000);
    });
  });
});
