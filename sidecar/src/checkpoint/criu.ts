import type { ChildProcess } from 'node:child_process';
import { spawn } from 'node:child_process';
import { runCommand } from '../runtime/run-command';

/** CRIU features the migration modes depend on; probed at run time, never assumed. */
export type CriuFeature = 'mem_dirty_track' | 'uffd' | 'uffd-noncoop';

export interface LazyPagesDaemonArgs {
  /** Source page server to pull pages from. */
  readonly address: string;
  readonly port: number;
  /** The restore's image and work directories: the daemon meets the restore through a socket there. */
  readonly imagesDir: string;
  readonly workDir: string;
  readonly logFile: string;
  /** Parent-side fd (a StatusChannel's writer) the daemon gets as fd 3 and writes one byte to once it serves. */
  readonly statusWriteFd: number;
  /** Network namespace to run the daemon in; '' = the sidecar's own. Never the restore's (runc locks it). */
  readonly netnsPath: string;
}

/** The node's transfer TLS material, which also authenticates and encrypts CRIU's lazy page stream. */
export interface CriuTls {
  readonly caFile: string;
  readonly certFile: string;
  readonly keyFile: string;
}

/**
 * CRIU's own TLS for page-server connections, as option names without their dashes: the source's page server
 * reads them from the task's CRIU config file, the target's lazy-pages daemon from its command line. Both
 * sides present their node certificate and require one signed by the cluster's CA.
 */
export function criuTlsOptions(tls: CriuTls): [string, string?][] {
  // CRIU matches the peer's certificate name against its *own* --address on both ends, which no pair of node
  // certificates satisfies; the peer is still required to hold a certificate signed by the cluster's CA.
  return [
    ['tls'],
    ['tls-cacert', tls.caFile],
    ['tls-cert', tls.certFile],
    ['tls-key', tls.keyFile],
    ['tls-no-cn-verify'],
  ];
}

/** The CRIU operations the sidecar runs directly (dumps and restores go through runc). */
export interface Criu {
  readonly bin: string;
  version(): Promise<string>;
  hasFeature(feature: CriuFeature): Promise<boolean>;
  /** Starts `criu lazy-pages`: it feeds a lazy restore from a source page server until every page arrived. */
  spawnLazyPages(args: LazyPagesDaemonArgs): ChildProcess;
}

export class CriuCli implements Criu {
  constructor(
    readonly bin: string,
    private readonly timeoutMs: number,
    private readonly tls?: CriuTls,
  ) {}

  async version(): Promise<string> {
    const result = await runCommand(this.bin, ['--version'], { timeoutMs: this.timeoutMs });
    return /Version:\s*(\S+)/.exec(String(result.stdout))?.[1] ?? 'unknown';
  }

  async hasFeature(feature: CriuFeature): Promise<boolean> {
    const result = await runCommand(this.bin, ['check', '--feature', feature], { timeoutMs: this.timeoutMs });
    return result.exitCode === 0;
  }

  spawnLazyPages(args: LazyPagesDaemonArgs): ChildProcess {
    const criuArgs = [
      'lazy-pages',
      '--page-server',
      '--address',
      args.address,
      '--port',
      String(args.port),
      '--images-dir',
      args.imagesDir,
      '--work-dir',
      args.workDir,
      '--status-fd',
      '3',
      '--log-file',
      args.logFile,
      ...(this.tls === undefined
        ? []
        : criuTlsOptions(this.tls).flatMap(([name, value]) =>
            value === undefined ? [`--${name}`] : [`--${name}`, value],
          )),
    ];
    const [file, argv] =
      args.netnsPath === ''
        ? [this.bin, criuArgs]
        : ['nsenter', [`--net=${args.netnsPath}`, '--', this.bin, ...criuArgs]];
    return spawn(file, argv, { stdio: ['ignore', 'ignore', 'pipe', args.statusWriteFd], detached: true });
  }
}
