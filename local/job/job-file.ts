import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ServiceDefinition } from '../controller/service-definition';
import { JobFileError, type JobFileErrorCode } from './errors';
import { HclDocument, type Hcl, type Step } from './hcl-document';
import { ExpressionProblem, JobExpressions, interpolate } from './job-expressions';

/** How local mode knows a service serves: the service's check, as Nomad's would. */
export type ServiceCheck = { readonly type: 'tcp' } | { readonly type: 'http'; readonly path: string };

/** One `driver = "chain"` task of a job, as the local controller runs it. */
export interface JobService {
  readonly definition: ServiceDefinition;
  readonly group: string;
  readonly task: string;
  readonly check: ServiceCheck;
  readonly killSignal: string;
  readonly killTimeoutMs: number;
}

export interface LocalJob {
  readonly name: string;
  readonly file: string;
  readonly services: readonly JobService[];
  /** Blocks and attributes that shape work in a real cluster and change nothing here: said to the operator. */
  readonly ignored: readonly string[];
}

export interface JobFileOptions {
  /** Where `file("…")` paths are relative to: the directory the command was run in, as for `nomad job run`. */
  readonly baseDir: string;
  /** Where a template's inline data is written before it is copied into the task's /local. */
  readonly filesDir: string;
}

/** Keys a block may hold: those local mode uses, and those it accepts and ignores (with why). */
interface BlockRules {
  readonly use: readonly string[];
  readonly ignore?: Readonly<Record<string, string>>;
}

const PLACEMENT = 'local nodes are alike';
const PACING = 'local mode moves one task at a time';
const RULES: Readonly<Record<string, BlockRules>> = {
  job: {
    use: ['type', 'group'],
    ignore: {
      datacenters: 'local mode is one datacenter',
      region: 'local mode is one region',
      namespace: 'local mode has no namespaces',
      node_pool: PLACEMENT,
      priority: 'local mode has no pre-emption by priority',
      all_at_once: PLACEMENT,
      constraint: PLACEMENT,
      affinity: PLACEMENT,
      spread: PLACEMENT,
      meta: 'nothing reads it',
      migrate: PACING,
      update: 'a job is run once',
      reschedule: 'local mode does not reschedule',
    },
  },
  group: {
    use: ['count', 'network', 'service', 'task'],
    ignore: {
      constraint: PLACEMENT,
      affinity: PLACEMENT,
      spread: PLACEMENT,
      meta: 'nothing reads it',
      migrate: PACING,
      update: 'a job is run once',
      reschedule: 'local mode does not reschedule',
      restart: 'local mode does not restart tasks',
      ephemeral_disk: 'the alloc dir moves with every task',
      shutdown_delay: 'a stop is immediate',
      max_client_disconnect: 'local nodes do not disconnect',
      stop_after_client_disconnect: 'local nodes do not disconnect',
    },
  },
  network: { use: ['mode', 'port'] },
  port: { use: ['static'], ignore: { host_network: 'every node has one address' } },
  service: {
    use: ['name', 'port', 'check'],
    ignore: {
      provider: 'HAProxy routes it',
      tags: 'nothing reads them',
      canary_tags: 'nothing reads them',
      meta: 'nothing reads it',
      enable_tag_override: 'nothing reads it',
      address_mode: 'the node address is used',
      task: 'a group runs one task',
    },
  },
  check: {
    use: ['type', 'path'],
    ignore: {
      name: 'not shown',
      interval: 'checked once, at start',
      timeout: 'checked once, at start',
      method: 'GET is used',
      protocol: 'plain http is used',
      initial_status: 'checked once, at start',
      check_restart: 'local mode does not restart tasks',
      success_before_passing: 'checked once, at start',
      failures_before_critical: 'checked once, at start',
    },
  },
  task: {
    use: ['driver', 'config', 'env', 'user', 'resources', 'service', 'template', 'kill_timeout', 'kill_signal'],
    ignore: {
      meta: 'nothing reads it',
      logs: 'stdout and stderr go to the task dir',
      leader: 'a group runs one task',
      shutdown_delay: 'a stop is immediate',
      restart: 'local mode does not restart tasks',
      constraint: PLACEMENT,
      affinity: PLACEMENT,
    },
  },
  config: {
    use: ['command', 'args', 'cwd', 'rootfs', 'chain'],
    ignore: {
      checkpoint_wait: "local mode's own applies (LocalModeOptions.checkpointWaitMs)",
      migration_mode: "local mode's own applies (auto)",
    },
  },
  resources: { use: ['cpu', 'memory', 'memory_max'] },
  template: {
    use: ['data', 'destination'],
    ignore: {
      change_mode: 'a static file never changes',
      change_signal: 'a static file never changes',
      splay: 'a static file never changes',
      wait: 'a static file never changes',
      perms: 'the file keeps its mode',
      error_on_missing_key: 'a static file has no keys',
    },
  },
};

/** Why a block is refused, where a word helps; any key not in the rules is refused too. */
const REFUSED_WHY: Readonly<Record<string, string>> = {
  template: 'only a static template (data with no {{ }} directives, destination in local/) is copied into the task',
  artifact: 'local mode downloads nothing: put the file in the task with a static template',
  volume: 'local mode has no host or CSI volumes',
  volume_mount: 'local mode has no host or CSI volumes',
  vault: 'local mode has no Vault',
  consul: 'local mode has no Consul',
  connect: 'local mode has no service mesh',
  lifecycle: 'local mode runs no prestart, poststart or sidecar tasks',
  periodic: 'local mode runs services, not periodic jobs',
  parameterized: 'local mode runs services, not dispatched jobs',
  dispatch_payload: 'local mode runs services, not dispatched jobs',
  scaling: 'local mode runs one instance per service',
  multiregion: 'local mode is one region',
  identity: 'local mode issues no workload identities',
  csi_plugin: 'local mode has no CSI',
  device: 'local mode has no devices',
  cores: 'local mode does not pin cores',
  dns: 'tasks use their node’s resolver',
};

const DEFAULT_MEMORY_MB = 300;
const MIB = 1024 * 1024;

/** Reads a Nomad job file (HCL2) and maps its `driver = "chain"` tasks to what the local controller runs. */
export async function loadJobFile(file: string, options: JobFileOptions): Promise<LocalJob> {
  const doc = await HclDocument.read(file);
  return new JobMapping(doc, new JobExpressions(doc.body.variable as Hcl | undefined, options.baseDir), options).job();
}

/** One pass over one job file: every refusal names the field's path, the file and, where found, the line. */
class JobMapping {
  private readonly ignored: string[] = [];

  constructor(
    private readonly doc: HclDocument,
    private readonly expressions: JobExpressions,
    private readonly options: JobFileOptions,
  ) {}

  private fail(code: JobFileErrorCode, at: readonly Step[], problem: string): JobFileError {
    const line = this.doc.lineOf(at);
    const where = `${this.doc.file}${line === undefined ? '' : `:${line}`}`;
    const field = at.map((s) => (s.label === undefined ? s.name : `${s.name} "${s.label}"`)).join(' > ');
    return new JobFileError(code, `${where}: ${field}: ${problem}`, {
      context: { file: this.doc.file, field, ...(line === undefined ? {} : { line }) },
    });
  }

  private invalid(at: readonly Step[], problem: string): JobFileError {
    return this.fail('NC_JOB_FIELD_INVALID', at, problem);
  }

  /** Refuses what local mode does not run, notes what it ignores; what is left is the block's used keys. */
  private check(kind: string, body: Hcl, at: readonly Step[]): void {
    const rules = RULES[kind] ?? { use: [] };
    for (const key of Object.keys(body)) {
      if (rules.use.includes(key)) continue;
      const why = rules.ignore?.[key];
      if (why !== undefined) {
        const note = `${kind}.${key}: ${why}`;
        if (!this.ignored.includes(note)) this.ignored.push(note);
        continue;
      }
      const reason = REFUSED_WHY[key] ?? `local mode does not support ${kind} ${key}`;
      throw this.fail('NC_JOB_UNSUPPORTED', [...at, { name: key }], `not supported in local mode: ${reason}`);
    }
  }

  /** The one body of a block given once (hcl2json makes every block a list). */
  private single(value: unknown, at: readonly Step[]): Hcl {
    const list = Array.isArray(value) ? (value as unknown[]) : [value];
    if (list.length !== 1) throw this.invalid(at, `expected one block, got ${list.length}`);
    const body = list[0];
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw this.invalid(at, 'expected a block');
    return body as Hcl;
  }

  /** Labelled blocks (`group "web" {…}`): label → body, each label given once. */
  private labelled(value: unknown, at: readonly Step[], kind: string): [string, Hcl][] {
    if (typeof value !== 'object' || value === null || Array.isArray(value))
      throw this.invalid([...at, { name: kind }], `expected ${kind} "NAME" { … } blocks`);
    return Object.entries(value as Hcl).map(([label, bodies]) => [
      label,
      this.single(bodies, [...at, { name: kind, label }]),
    ]);
  }

  private value(body: Hcl, key: string, at: readonly Step[]): unknown {
    const value = this.expressions.evaluate(body[key]);
    if (value instanceof ExpressionProblem)
      throw this.fail('NC_JOB_UNSUPPORTED', [...at, { name: key }], value.problem);
    return value;
  }

  private string(body: Hcl, key: string, at: readonly Step[]): string | undefined {
    const value = this.value(body, key, at);
    if (value === undefined) return undefined;
    if (typeof value !== 'string') throw this.invalid([...at, { name: key }], `expected a string, got ${show(value)}`);
    return value;
  }

  private number(body: Hcl, key: string, at: readonly Step[], min: number): number | undefined {
    const value = this.value(body, key, at);
    if (value === undefined) return undefined;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min)
      throw this.invalid([...at, { name: key }], `expected a whole number of at least ${min}, got ${show(value)}`);
    return value;
  }

  private duration(body: Hcl, key: string, at: readonly Step[]): number | undefined {
    const text = this.string(body, key, at);
    if (text === undefined) return undefined;
    const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(text);
    if (match === null) throw this.invalid([...at, { name: key }], `expected a duration like "5s", got ${show(text)}`);
    const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[match[2] as 'ms' | 's' | 'm' | 'h'];
    return Number(match[1]) * unit;
  }

  job(): LocalJob {
    const top = this.doc.body;
    for (const key of Object.keys(top))
      if (key !== 'job' && key !== 'variable' && key !== 'locals')
        throw this.fail('NC_JOB_UNSUPPORTED', [{ name: key }], 'not supported in a job file');
    if (top.locals !== undefined) throw this.fail('NC_JOB_UNSUPPORTED', [{ name: 'locals' }], 'use variables');
    const jobs = this.labelled(top.job, [], 'job');
    if (jobs.length !== 1) throw this.invalid([{ name: 'job' }], `expected one job, got ${jobs.length}`);
    const [name, body] = jobs[0] as [string, Hcl];
    const at = [{ name: 'job', label: name }];
    this.check('job', body, at);
    const type = this.string(body, 'type', at) ?? 'service';
    if (type !== 'service')
      throw this.fail('NC_JOB_UNSUPPORTED', [...at, { name: 'type' }], `local mode runs service jobs, not ${type}`);
    if (body.group === undefined) throw this.invalid(at, 'has no group');
    const services = this.labelled(body.group, at, 'group').map(([group, groupBody]) =>
      this.group(name, group, groupBody, [...at, { name: 'group', label: group }]),
    );
    const names = services.map((s) => s.definition.name);
    const twice = names.find((n, i) => names.indexOf(n) !== i);
    if (twice !== undefined) throw this.invalid(at, `two tasks serve the service "${twice}": names must differ`);
    return { name, file: this.doc.file, services, ignored: this.ignored };
  }

  private group(job: string, group: string, body: Hcl, at: readonly Step[]): JobService {
    this.check('group', body, at);
    const count = this.number(body, 'count', at, 0) ?? 1;
    if (count !== 1)
      throw this.fail(
        'NC_JOB_UNSUPPORTED',
        [...at, { name: 'count' }],
        `local mode runs one instance per group, not ${count}`,
      );
    const ports = this.ports(body, at);
    if (body.task === undefined) throw this.invalid(at, 'has no task');
    const tasks = this.labelled(body.task, at, 'task');
    if (tasks.length !== 1)
      throw this.fail(
        'NC_JOB_UNSUPPORTED',
        at,
        `local mode places each task on its own node, so a group must hold one task (it holds ${tasks.length})`,
      );
    const [task, taskBody] = tasks[0] as [string, Hcl];
    const taskAt = [...at, { name: 'task', label: task }];
    // Nomad lets a group's service or its task's name the port; local mode routes one per task.
    const services = [
      ...(body.service === undefined
        ? []
        : this.blocks(body.service).map((s) => ({ body: s, at: [...at, { name: 'service' }] }))),
      ...(taskBody.service === undefined
        ? []
        : this.blocks(taskBody.service).map((s) => ({ body: s, at: [...taskAt, { name: 'service' }] }))),
    ];
    if (services.length !== 1)
      throw this.fail(
        'NC_JOB_UNSUPPORTED',
        taskAt,
        services.length === 0
          ? 'local mode runs services: give the group (or task) one service block with a port'
          : `local mode routes one service per task (it has ${services.length})`,
      );
    return this.task(job, group, task, taskBody, taskAt, ports, services[0] as { body: Hcl; at: Step[] });
  }

  private blocks(value: unknown): Hcl[] {
    return (Array.isArray(value) ? value : [value]) as Hcl[];
  }

  /** The group's static ports by label: a restored process keeps its listening socket, so its port too. */
  private ports(body: Hcl, at: readonly Step[]): Map<string, number> {
    const ports = new Map<string, number>();
    if (body.network === undefined) return ports;
    const netAt = [...at, { name: 'network' }];
    const network = this.single(body.network, netAt);
    this.check('network', network, netAt);
    const mode = this.string(network, 'mode', netAt) ?? 'host';
    if (mode !== 'host')
      throw this.fail(
        'NC_JOB_UNSUPPORTED',
        [...netAt, { name: 'mode' }],
        `local mode gives each node one network namespace: mode "${mode}" is not supported (use "host")`,
      );
    if (network.port === undefined) return ports;
    for (const [label, port] of this.labelled(network.port, netAt, 'port')) {
      const portAt = [...netAt, { name: 'port', label }];
      this.check('port', port, portAt);
      const value = this.number(port, 'static', portAt, 1);
      if (value === undefined || value > 65535)
        throw this.fail(
          value === undefined ? 'NC_JOB_UNSUPPORTED' : 'NC_JOB_FIELD_INVALID',
          [...portAt, { name: 'static' }],
          'a chained task needs a static port from 1 to 65535: a restored process keeps its listening socket',
        );
      ports.set(label, value);
    }
    return ports;
  }

  private task(
    job: string,
    group: string,
    task: string,
    body: Hcl,
    at: readonly Step[],
    ports: ReadonlyMap<string, number>,
    service: { body: Hcl; at: Step[] },
  ): JobService {
    this.check('task', body, at);
    const driver = this.string(body, 'driver', at);
    if (driver !== 'chain')
      throw this.fail(
        'NC_JOB_UNSUPPORTED',
        [...at, { name: 'driver' }],
        `local mode runs only driver = "chain" tasks, not ${show(driver)}`,
      );
    const resources = this.resources(body, at);
    const runtime: Record<string, string> = {
      NOMAD_JOB_NAME: job,
      NOMAD_JOB_ID: job,
      NOMAD_GROUP_NAME: group,
      NOMAD_TASK_NAME: task,
      NOMAD_ALLOC_DIR: '/alloc',
      NOMAD_TASK_DIR: '/local',
      NOMAD_SECRETS_DIR: '/secrets',
      NOMAD_MEMORY_LIMIT: String(resources.memoryMb),
      ...(resources.cpu === undefined ? {} : { NOMAD_CPU_LIMIT: String(resources.cpu) }),
    };
    for (const [label, port] of ports) {
      runtime[`NOMAD_PORT_${label}`] = String(port);
      runtime[`NOMAD_HOST_PORT_${label}`] = String(port);
    }
    const resolve = (text: string, field: readonly Step[]): string => {
      const value = interpolate(text, runtime);
      if (value instanceof ExpressionProblem) throw this.fail('NC_JOB_UNSUPPORTED', field, value.problem);
      return value;
    };
    const { name, port, check } = this.service(service.body, service.at, ports, resolve);
    const configAt = [...at, { name: 'config' }];
    if (body.config === undefined) throw this.invalid(at, 'has no config block (config { command = "…" })');
    const config = this.single(body.config, configAt);
    this.check('config', config, configAt);
    const command = this.string(config, 'command', configAt);
    if (command === undefined || command.trim() === '')
      throw this.invalid([...configAt, { name: 'command' }], 'is required and must not be empty');
    const args = this.value(config, 'args', configAt) ?? [];
    if (!Array.isArray(args) || args.some((a) => typeof a !== 'string'))
      throw this.invalid([...configAt, { name: 'args' }], `expected a list of strings, got ${show(args)}`);
    const cwd = this.string(config, 'cwd', configAt) ?? '/';
    if (!cwd.startsWith('/'))
      throw this.invalid([...configAt, { name: 'cwd' }], `expected an absolute path in the task, got ${show(cwd)}`);
    const rootfs = this.string(config, 'rootfs', configAt) ?? '';
    if (rootfs !== '' && !rootfs.startsWith('/'))
      throw this.invalid([...configAt, { name: 'rootfs' }], `expected an absolute host path, got ${show(rootfs)}`);
    const chain = this.value(config, 'chain', configAt) ?? true;
    if (typeof chain !== 'boolean')
      throw this.invalid([...configAt, { name: 'chain' }], `expected true or false, got ${show(chain)}`);
    if (!chain)
      throw this.fail('NC_JOB_UNSUPPORTED', [...configAt, { name: 'chain' }], 'local mode runs chained tasks only');
    const user = this.string(body, 'user', at);
    const killSignal = this.string(body, 'kill_signal', at) ?? 'SIGTERM';
    if (!/^SIG[A-Z0-9]+$/.test(killSignal))
      throw this.invalid(
        [...at, { name: 'kill_signal' }],
        `expected a signal name like "SIGTERM", got ${show(killSignal)}`,
      );
    const definition: ServiceDefinition = {
      name,
      argv: [
        resolve(command, [...configAt, { name: 'command' }]),
        ...(args as string[]).map((a, i) => resolve(a, [...configAt, { name: `args[${i}]` }])),
      ],
      env: { ...runtime, ...this.env(body, at, resolve) },
      port,
      localFiles: this.templates(body, at, job, task),
      memoryLimitBytes: resources.memoryLimitMb * MIB,
      cwd,
      ...(user === undefined || user === '' ? {} : { user }),
      ...(resources.cpu === undefined ? {} : { cpuShares: resources.cpu }),
      ...(rootfs === '' ? {} : { rootfs }),
    };
    return {
      definition,
      group,
      task,
      check,
      killSignal,
      killTimeoutMs: this.duration(body, 'kill_timeout', at) ?? 5000,
    };
  }

  private resources(body: Hcl, at: readonly Step[]): { memoryMb: number; memoryLimitMb: number; cpu?: number } {
    if (body.resources === undefined) return { memoryMb: DEFAULT_MEMORY_MB, memoryLimitMb: DEFAULT_MEMORY_MB };
    const resAt = [...at, { name: 'resources' }];
    const resources = this.single(body.resources, resAt);
    this.check('resources', resources, resAt);
    const memoryMb = this.number(resources, 'memory', resAt, 10) ?? DEFAULT_MEMORY_MB;
    const memoryMax = this.number(resources, 'memory_max', resAt, memoryMb);
    const cpu = this.number(resources, 'cpu', resAt, 1);
    // Nomad's memory_max is the hard limit when oversubscription allows it; memory is then what it reserves.
    return { memoryMb, memoryLimitMb: memoryMax ?? memoryMb, ...(cpu === undefined ? {} : { cpu }) };
  }

  private env(
    body: Hcl,
    at: readonly Step[],
    resolve: (text: string, field: readonly Step[]) => string,
  ): Record<string, string> {
    if (body.env === undefined) return {};
    const envAt = [...at, { name: 'env' }];
    const env = this.single(body.env, envAt);
    const out: Record<string, string> = {};
    for (const key of Object.keys(env)) {
      const value = this.value(env, key, envAt);
      if (typeof value !== 'string' && typeof value !== 'number' && typeof value !== 'boolean')
        throw this.invalid([...envAt, { name: key }], `expected a string, got ${show(value)}`);
      out[key] = resolve(String(value), [...envAt, { name: key }]);
    }
    return out;
  }

  private service(
    body: Hcl,
    at: readonly Step[],
    ports: ReadonlyMap<string, number>,
    resolve: (text: string, field: readonly Step[]) => string,
  ): { name: string; port: number; check: ServiceCheck } {
    this.check('service', body, at);
    const rawName = this.string(body, 'name', at);
    if (rawName === undefined)
      throw this.invalid([...at, { name: 'name' }], 'is required in local mode (it names the route)');
    const name = resolve(rawName, [...at, { name: 'name' }]);
    if (!/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i.test(name))
      throw this.invalid(
        [...at, { name: 'name' }],
        `expected letters, digits and dashes (RFC 1123), got ${show(name)}`,
      );
    const label = this.string(body, 'port', at);
    const port = label === undefined ? undefined : ports.get(label);
    if (port === undefined)
      throw this.invalid(
        [...at, { name: 'port' }],
        `expected the label of a static port of the group's network (${[...ports.keys()].join(', ') || 'none'}), got ${show(label)}`,
      );
    const checks = body.check === undefined ? [] : this.blocks(body.check);
    if (checks.length > 1)
      throw this.fail('NC_JOB_UNSUPPORTED', [...at, { name: 'check' }], 'local mode runs one check');
    const first = checks[0];
    if (first === undefined) return { name, port, check: { type: 'tcp' } };
    const checkAt = [...at, { name: 'check' }];
    this.check('check', first, checkAt);
    const type = this.string(first, 'type', checkAt);
    if (type === 'tcp') return { name, port, check: { type } };
    if (type !== 'http')
      throw this.fail(
        'NC_JOB_UNSUPPORTED',
        [...checkAt, { name: 'type' }],
        `local mode runs http and tcp checks, not ${show(type)}`,
      );
    const path = this.string(first, 'path', checkAt);
    if (path?.startsWith('/') !== true)
      throw this.invalid(
        [...checkAt, { name: 'path' }],
        `an http check needs a path starting with /, got ${show(path)}`,
      );
    return { name, port, check: { type, path } };
  }

  /** Static templates only: their files are copied into the task's /local as they are. */
  private templates(body: Hcl, at: readonly Step[], job: string, task: string): Record<string, string> {
    const files: Record<string, string> = {};
    if (body.template === undefined) return files;
    for (const [index, template] of this.blocks(body.template).entries()) {
      const tAt = [...at, { name: 'template' }];
      this.check('template', template, tAt);
      const destination = this.string(template, 'destination', tAt) ?? '';
      const name = /^(?:local|\$\{NOMAD_TASK_DIR\})\/([^/]+)$/.exec(destination)?.[1];
      if (name === undefined || name === '.' || name === '..')
        throw this.fail(
          'NC_JOB_UNSUPPORTED',
          [...tAt, { name: 'destination' }],
          `local mode writes a template only as a file directly in local/ (local/NAME), not ${show(destination)}`,
        );
      const data = this.string(template, 'data', tAt);
      if (data === undefined) throw this.fail('NC_JOB_UNSUPPORTED', tAt, `${REFUSED_WHY.template}: give data`);
      if (data.includes('{{'))
        throw this.fail(
          'NC_JOB_UNSUPPORTED',
          [...tAt, { name: 'data' }],
          `${REFUSED_WHY.template}: this one has directives`,
        );
      const source = this.expressions.fileOf(template.data);
      if (source !== undefined) {
        files[source] = name;
        continue;
      }
      const dir = join(this.options.filesDir, job, task);
      mkdirSync(dir, { recursive: true });
      const path = join(dir, `${index}-${name}`);
      writeFileSync(path, data);
      files[path] = name;
    }
    return files;
  }
}

function show(value: unknown): string {
  return value === undefined ? 'nothing' : JSON.stringify(value);
}
