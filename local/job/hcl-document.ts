import { readFile } from 'node:fs/promises';
import { parse } from '@cdktf/hcl2json';
import { errorMessage } from '../../common/errors';
import { JobFileError } from './errors';

/** HCL as hcl2json gives it: every block a list of bodies, labelled blocks a map of such lists. */
export type Hcl = Record<string, unknown>;

/** One step from the file's top down to a block or attribute: its name and, for a labelled block, its label. */
export interface Step {
  readonly name: string;
  readonly label?: string;
}

/** A parsed HCL file, with its lines kept so a refusal can say where: hcl2json's JSON carries no positions. */
export class HclDocument {
  /** The source lines with comments and heredoc bodies blanked, so a search for a block finds only code. */
  private readonly code: readonly string[];

  private constructor(
    readonly file: string,
    readonly body: Hcl,
    source: string,
  ) {
    this.code = codeLines(source);
  }

  static async read(file: string): Promise<HclDocument> {
    let source: string;
    try {
      source = await readFile(file, 'utf8');
    } catch (err) {
      throw new JobFileError('NC_JOB_FILE_INVALID', `cannot read job file ${file}: ${errorMessage(err)}`, {
        cause: err,
        context: { file },
      });
    }
    let body: Hcl;
    try {
      body = (await parse(file, source)) as Hcl;
    } catch (err) {
      // The parser's message carries file:line,column.
      throw new JobFileError('NC_JOB_FILE_INVALID', `${file} is not valid HCL: ${errorMessage(err)}`, {
        cause: err,
        context: { file },
      });
    }
    return new HclDocument(file, body, source);
  }

  /**
   * The line where the last of `steps` starts, found by walking down the source block by block (each step
   * searched from its parent's line on); the innermost one found when a step is not written as a block or
   * attribute of its own (a map given as `env = {…}`).
   */
  lineOf(steps: readonly Step[]): number | undefined {
    let from = 0;
    let line: number | undefined;
    for (const step of steps) {
      const name = escapeRegExp(step.name);
      const pattern =
        step.label === undefined
          ? new RegExp(`^\\s*${name}(\\s+"[^"]*")*\\s*[={]`)
          : new RegExp(`^\\s*${name}\\s+"${escapeRegExp(step.label)}"\\s*\\{`);
      const index = this.code.findIndex((text, i) => i >= from && pattern.test(text));
      if (index < 0) return line;
      line = index + 1;
      from = index + 1;
    }
    return line;
  }
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function codeLines(source: string): string[] {
  let heredoc: string | undefined;
  return source.split('\n').map((text) => {
    if (heredoc !== undefined) {
      if (text.trim() === heredoc) heredoc = undefined;
      return '';
    }
    const opens = /<<-?([A-Za-z_][A-Za-z0-9_]*)\s*$/.exec(text);
    if (opens !== null) heredoc = opens[1];
    return /^\s*(#|\/\/)/.test(text) ? '' : text;
  });
}
