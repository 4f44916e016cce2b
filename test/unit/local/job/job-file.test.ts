import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { loadJobFile, type LocalJob } from '../../../../local/job/job-file';
import { EXAMPLE_JOB_FILE, EXAMPLE_SERVICE } from '../../../../local/local-mode';

const REPO = resolve(__dirname, '..', '..', '..', '..');

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'nc-job-file-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

async function load(text: string): Promise<LocalJob> {
  const file = join(dir, 'test.nomad.hcl');
  writeFileSync(file, text);
  return loadJobFile(file, { baseDir: dir, filesDir: join(dir, 'files') });
}

/** The code and message of what loading `text` throws. */
async function refusal(text: string): Promise<{ code: string; message: string }> {
  try {
    await load(text);
  } catch (err) {
    const { code, message } = err as { code: string; message: string };
    return { code, message };
  }
  throw new Error('the job file was accepted');
}

/** A job with one chained task; `task` and `group` are spliced into their bodies. */
function job({ task = '', group = '', config = '' } = {}): string {
  return `variable "port" {
  type    = number
  default = 9090
}

job "web" {
  datacenters = ["dc1"]

  group "web" {
    network {
      port "http" {
        static = var.port
      }
    }

    service {
      name = "web-\${NOMAD_JOB_NAME}"
      port = "http"

      check {
        type     = "http"
        path     = "/health"
        interval = "2s"
      }
    }
${group}
    task "server" {
      driver = "chain"
      user   = "nobody"

      config {
        command = "/usr/bin/python3"
        args    = ["-m", "http.server", "\${NOMAD_PORT_http}"]
${config}
      }

      env {
        GREETING = "hello from \${NOMAD_TASK_NAME}"
        PORT     = "\${NOMAD_PORT_http}"
      }

      resources {
        cpu    = 250
        memory = 64
      }

      kill_timeout = "3s"
${task}
    }
  }
}
`;
}

describe('a Nomad job file, mapped to what the local controller runs', () => {
  it('maps command, args, env, user, resources, the static port and the service with its check', async () => {
    const mapped = await load(job());
    expect(mapped.name).toBe('web');
    expect(mapped.services).toHaveLength(1);
    const [service] = mapped.services;
    expect(service).toMatchObject({
      group: 'web',
      task: 'server',
      check: { type: 'http', path: '/health' },
      killSignal: 'SIGTERM',
      killTimeoutMs: 3000,
    });
    expect(service?.definition).toEqual({
      name: 'web-web',
      argv: ['/usr/bin/python3', '-m', 'http.server', '9090'],
      env: expect.objectContaining({
        GREETING: 'hello from server',
        PORT: '9090',
        NOMAD_PORT_http: '9090',
        NOMAD_JOB_NAME: 'web',
        NOMAD_TASK_DIR: '/local',
        NOMAD_MEMORY_LIMIT: '64',
        NOMAD_CPU_LIMIT: '250',
      }) as unknown,
      port: 9090,
      localFiles: {},
      memoryLimitBytes: 64 * 1024 * 1024,
      cwd: '/',
      user: 'nobody',
      cpuShares: 250,
    });
    // What shapes work only in a real cluster is said, not silently dropped.
    expect(mapped.ignored).toEqual([
      'job.datacenters: local mode is one datacenter',
      'check.interval: checked once, at start',
    ]);
  });

  it('is the example local mode runs: jobs/examples/kv.nomad.hcl maps to EXAMPLE_SERVICE', async () => {
    const mapped = await loadJobFile(EXAMPLE_JOB_FILE, { baseDir: REPO, filesDir: join(dir, 'files') });
    const definition = mapped.services[0]?.definition;
    expect(definition).toMatchObject({ ...EXAMPLE_SERVICE, env: expect.objectContaining({ PORT: '8080' }) as unknown });
    expect(definition?.cwd).toBe('/local');
  });

  it('copies a static template into /local; inline data is written out, file() is copied from its path', async () => {
    writeFileSync(join(dir, 'app.py'), 'print("hi")\n');
    const mapped = await load(
      job({
        task: `
      template {
        data        = "port: 9090\\n"
        destination = "local/app.conf"
        change_mode = "noop"
      }

      template {
        data        = file("app.py")
        destination = "\${NOMAD_TASK_DIR}/app.py"
      }`,
      }),
    );
    const files = Object.entries(mapped.services[0]?.definition.localFiles ?? {});
    expect(files.map(([, name]) => name).sort()).toEqual(['app.conf', 'app.py']);
    expect(files.find(([, name]) => name === 'app.py')?.[0]).toBe(join(dir, 'app.py'));
    const inline = files.find(([, name]) => name === 'app.conf')?.[0] ?? '';
    expect(readFileSync(inline, 'utf8')).toBe('port: 9090\n');
  });

  it.each([
    [
      'template with directives',
      () => job({ task: 'template {\n data = "{{ key \\"x\\" }}"\n destination = "local/x"\n }' }),
      'data',
    ],
    ['artifact', () => job({ task: 'artifact {\n source = "https://example.com/app.tgz"\n }' }), 'artifact'],
    [
      'volume_mount',
      () => job({ task: 'volume_mount {\n volume = "data"\n destination = "/data"\n }' }),
      'volume_mount',
    ],
    ['vault', () => job({ task: 'vault {\n policies = ["app"]\n }' }), 'vault'],
    ['lifecycle', () => job({ task: 'lifecycle {\n hook = "prestart"\n }' }), 'lifecycle'],
    ['a group volume', () => job({ group: 'volume "data" {\n type = "host"\n source = "data"\n }' }), 'volume'],
    ['count above 1', () => job({ group: 'count = 2' }), 'count'],
    ['another driver', () => job().replace('driver = "chain"', 'driver = "docker"'), 'driver'],
  ])('refuses %s with NC_JOB_UNSUPPORTED, naming the block and its line', async (_, text, field) => {
    const source = text();
    const { code, message } = await refusal(source);
    expect(code).toBe('NC_JOB_UNSUPPORTED');
    const match = /^(.*?):(\d+): (.*)$/s.exec(message);
    expect(match?.[1]).toBe(join(dir, 'test.nomad.hcl'));
    expect(match?.[3]).toContain(`> ${field}: `);
    // The line named is where the refused block or attribute is written.
    expect(source.split('\n')[Number(match?.[2]) - 1]?.trim().startsWith(field)).toBe(true);
  });

  it.each([
    ['a number for a string', () => job({ config: 'cwd = 3' }), 'config > cwd', 'expected a string, got 3'],
    ['a string for a bool', () => job({ config: 'chain = "yes"' }), 'config > chain', 'expected true or false'],
    ['a relative cwd', () => job({ config: 'cwd = "local"' }), 'config > cwd', 'absolute path'],
    [
      'a string for memory',
      () => job().replace('memory = 64', 'memory = "lots"'),
      'resources > memory',
      'whole number',
    ],
    [
      'a list of numbers for args',
      () => job().replace('"-m", "http.server"', '1, 2'),
      'config > args',
      'list of strings',
    ],
    [
      'a bad kill_timeout',
      () => job().replace('kill_timeout = "3s"', 'kill_timeout = "soon"'),
      'kill_timeout',
      'duration',
    ],
  ])('refuses %s with NC_JOB_FIELD_INVALID, naming the field', async (_, text, field, problem) => {
    const { code, message } = await refusal(text());
    expect(code).toBe('NC_JOB_FIELD_INVALID');
    expect(message).toContain(`> ${field}: `);
    expect(message).toContain(problem);
  });

  it('refuses a dynamic port, an expression it cannot evaluate and a runtime variable it does not set', async () => {
    expect(await refusal(job().replace('static = var.port', ''))).toMatchObject({
      code: 'NC_JOB_UNSUPPORTED',
      message: expect.stringContaining('static port') as unknown,
    });
    expect(await refusal(job().replace('"/usr/bin/python3"', 'upper("x")'))).toMatchObject({
      code: 'NC_JOB_UNSUPPORTED',
      message: expect.stringContaining('not supported in local mode') as unknown,
    });
    expect(await refusal(job().replace('${NOMAD_TASK_NAME}', '${NOMAD_IP_http}'))).toMatchObject({
      code: 'NC_JOB_UNSUPPORTED',
      message: expect.stringContaining('NOMAD_IP_http} is not set in local mode') as unknown,
    });
  });

  it('refuses a file that is not HCL with the parser’s line, and a missing file', async () => {
    expect(await refusal('job "x" {\n  type = \n}\n')).toMatchObject({
      code: 'NC_JOB_FILE_INVALID',
      message: expect.stringMatching(/test\.nomad\.hcl:2,/) as unknown,
    });
    await expect(loadJobFile(join(dir, 'none.hcl'), { baseDir: dir, filesDir: dir })).rejects.toMatchObject({
      code: 'NC_JOB_FILE_INVALID',
    });
  });
});
