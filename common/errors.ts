/**
 * The base of every error nomad-chain raises. `code` is stable and documented in README's error table;
 * codes are never reused or renamed (a catalogue test keeps the two in step).
 */
export interface ErrorContext {
  readonly [key: string]: string | number | boolean | undefined;
}

export interface NomadChainErrorOptions extends ErrorOptions {
  readonly context?: ErrorContext;
  /** Whether Nomad (or the caller) may retry: maps to Nomad's RecoverableError at the plugin boundary. */
  readonly recoverable?: boolean;
}

export class NomadChainError extends Error {
  readonly code: string;
  readonly context: ErrorContext;
  readonly recoverable: boolean;

  constructor(code: string, message: string, options: NomadChainErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.context = Object.freeze({ ...(options.context ?? {}) });
    this.recoverable = options.recoverable ?? false;
  }
}

/** Narrows an unknown thrown value, for code that must read `code` without trusting `instanceof`. */
export function errorCode(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err) {
    const code: unknown = err.code;
    return typeof code === 'string' ? code : undefined;
  }
  return undefined;
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
