import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { errorMessage } from '../../common/errors';
import type { Hcl } from './hcl-document';

/** `${…}` that stands alone in a string: its value keeps its type (`static = var.port` is a number). */
const WHOLE = /^\$\{([^{}]*)\}$/;
const EMBEDDED = /\$\{([^{}]*)\}/g;
const VARIABLE = /^var\.([A-Za-z_][A-Za-z0-9_-]*)$/;
const FILE = /^file\("([^"\\]*)"\)$/;
/** Nomad's runtime variables are interpolated per task, after the parse (`${NOMAD_PORT_http}`). */
const RUNTIME = /^NOMAD_[A-Za-z0-9_]+$/;

/** Why an expression cannot be evaluated; the caller names the field and the line. */
export class ExpressionProblem {
  constructor(readonly problem: string) {}
}

/**
 * What a job file's expressions may use in local mode, as `nomad job run` evaluates them before it submits:
 * its variables' defaults (`var.x`) and `file("path")`, read relative to the directory the command runs in.
 * Nomad's runtime variables are left for `interpolate`; any other function or reference is refused.
 */
export class JobExpressions {
  private readonly defaults = new Map<string, unknown>();

  constructor(
    variables: Hcl | undefined,
    private readonly baseDir: string,
  ) {
    for (const [name, bodies] of Object.entries(variables ?? {})) {
      const body = (Array.isArray(bodies) ? bodies[0] : undefined) as Hcl | undefined;
      if (body !== undefined && 'default' in body) this.defaults.set(name, body.default);
    }
  }

  /** The value with its parse-time expressions evaluated, or the problem with the first that cannot be. */
  evaluate(value: unknown): unknown {
    if (typeof value === 'string') return this.evaluateString(value);
    if (Array.isArray(value)) {
      const items = value.map((item) => this.evaluate(item));
      return items.find((item) => item instanceof ExpressionProblem) ?? items;
    }
    return value;
  }

  /** A file a template's `data = file("…")` reads: copied into the task as it is, not read into the job. */
  fileOf(value: unknown): string | undefined {
    const expression = typeof value === 'string' ? WHOLE.exec(value)?.[1] : undefined;
    const path = expression === undefined ? undefined : FILE.exec(expression.trim())?.[1];
    return path === undefined ? undefined : resolve(this.baseDir, path);
  }

  private evaluateString(text: string): unknown {
    const whole = WHOLE.exec(text);
    if (whole !== null) return this.evaluateOne(whole[1]?.trim() ?? '', true);
    let problem: ExpressionProblem | undefined;
    const result = text.replace(EMBEDDED, (match, expression: string) => {
      const value = this.evaluateOne(expression.trim(), false);
      if (value instanceof ExpressionProblem) problem ??= value;
      return value instanceof ExpressionProblem ? match : String(value);
    });
    return problem ?? result;
  }

  private evaluateOne(expression: string, whole: boolean): unknown {
    if (RUNTIME.test(expression)) return `\${${expression}}`;
    const variable = VARIABLE.exec(expression)?.[1];
    if (variable !== undefined) {
      if (!this.defaults.has(variable))
        return new ExpressionProblem(
          `variable "${variable}" is not declared with a default (local mode runs the defaults)`,
        );
      const value = this.defaults.get(variable);
      return whole || typeof value !== 'object' ? value : new ExpressionProblem(`var.${variable} is not a string`);
    }
    const path = FILE.exec(expression)?.[1];
    if (path !== undefined) {
      try {
        return readFileSync(resolve(this.baseDir, path), 'utf8');
      } catch (err) {
        return new ExpressionProblem(`file("${path}"): ${errorMessage(err)}`);
      }
    }
    return new ExpressionProblem(
      `the expression \${${expression}} is not supported in local mode (only var.NAME, file("PATH") and Nomad's runtime NOMAD_* variables)`,
    );
  }
}

/**
 * Nomad's runtime interpolation of a task's `${NOMAD_…}` (its ports, directories, names), as the client does
 * before it starts the task; a name local mode does not set is the problem returned.
 */
export function interpolate(text: string, runtime: Readonly<Record<string, string>>): string | ExpressionProblem {
  let problem: ExpressionProblem | undefined;
  const result = text.replace(EMBEDDED, (match, expression: string) => {
    const value = runtime[expression.trim()];
    if (value === undefined)
      problem ??= new ExpressionProblem(
        `\${${expression}} is not set in local mode (it sets ${Object.keys(runtime).sort().join(', ')})`,
      );
    return value ?? match;
  });
  return problem ?? result;
}
