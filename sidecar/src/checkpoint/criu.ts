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
    ];
    const [file, argv] =
      args.netnsPath === ''
        ? [this.bin, criuArgs]
        : ['nsenter', [`--net=${args.netnsPath}`, '--', this.bin, ...criuArgs]];
    return spawn(file, argv, { stdio: ['ignore', 'ignore', 'pipe', args.statusWriteFd], detached: true });
  }
}
