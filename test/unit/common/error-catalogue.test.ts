import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';

const REPO = resolve(__dirname, '..', '..', '..');
const SOURCE_ROOTS = ['common', 'plugin/src', 'sidecar/src', 'forecaster/src', 'local'];

function sourceFiles(dir: string): string[] {
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch {
    return [];
  }
  return entries.flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sourceFiles(path);
    return path.endsWith('.ts') ? [path] : [];
  });
}

function codesInSource(): Map<string, string> {
  const codes = new Map<string, string>();
  for (const root of SOURCE_ROOTS) {
    for (const file of sourceFiles(join(REPO, root))) {
      for (const match of readFileSync(file, 'utf8').matchAll(/['"`](NC_[A-Z0-9_]+)['"`]/g)) {
        if (match[1] !== undefined) codes.set(match[1], file.slice(REPO.length + 1));
      }
    }
  }
  return codes;
}

function codesInReadme(): Set<string> {
  const readme = readFileSync(join(REPO, 'README.md'), 'utf8');
  return new Set([...readme.matchAll(/^\|\s*`(NC_[A-Z0-9_]+)`\s*\|/gm)].map((m) => m[1] ?? ''));
}

describe("error catalogue: README's table and the code stay in step", () => {
  const source = codesInSource();
  const documented = codesInReadme();

  it('documents every code the source raises', () => {
    const missing = [...source.entries()]
      .filter(([code]) => !documented.has(code))
      .map(([code, file]) => `${code} (${file})`);
    expect(missing).toEqual([]);
  });

  it('documents no code the source no longer raises', () => {
    expect([...documented].filter((code) => !source.has(code))).toEqual([]);
  });
});
