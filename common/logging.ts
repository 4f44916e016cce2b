import pino from 'pino';
import type { Logger, LoggerOptions } from 'pino';

export type { Logger };

export interface LoggerSetup {
  readonly level?: string;
  /** Where JSON lines go: 1 (stdout, sidecar/forecaster) or 2 (stderr, the plugin: stdout is the handshake's). */
  readonly fd?: 1 | 2;
  /** hclog shape (`@level`, `@message`, `@timestamp`) so the Nomad agent re-logs plugin lines at their level. */
  readonly hclog?: boolean;
  readonly name?: string;
  /** A file to append JSON lines to instead of `fd`, for commands whose terminal output is for people. */
  readonly file?: string;
}

const REDACT = ['token', '*.token', 'key', '*.key', 'privateKey', '*.privateKey', 'secretId', '*.secretId'];

function hclogTimestamp(): string {
  // hclog wants six fractional digits; Date gives three.
  const iso = new Date().toISOString();
  return `,"@timestamp":"${iso.slice(0, 23)}000Z"`;
}

/** Builds the one root logger of a process; only main.ts calls this, everything else takes a child. */
export function createRootLogger(setup: LoggerSetup = {}): Logger {
  const options: LoggerOptions = { level: setup.level ?? 'info', redact: REDACT };
  if (setup.name !== undefined) options.name = setup.name;
  if (setup.hclog === true) {
    options.messageKey = '@message';
    options.timestamp = hclogTimestamp;
    options.base = undefined;
    options.formatters = { level: (label) => ({ '@level': label }) };
  }
  const destination =
    setup.file !== undefined ? { dest: setup.file, mkdir: true, sync: true } : { fd: setup.fd ?? 1, sync: true };
  return pino(options, pino.destination(destination));
}
