// What the soak and the drain benchmark print: their figures as text tables, and the verdict.

/** Nearest-rank percentile (p in 0..100) of the values; NaN when there are none. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? NaN;
}

/** Rows of cells as a left-aligned text table, the first row its header. */
export function table(rows: readonly (readonly (string | number)[])[]): string {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, String(cell).length)));
  return rows.map((row) => row.map((cell, i) => String(cell).padEnd(widths[i] ?? 0)).join('  ')).join('\n');
}

/** Each broken promise on a line of its own, then the verdict. */
export function printVerdict(broken: readonly string[]): void {
  for (const line of broken) console.log(`BROKEN: ${line}`);
  console.log(broken.length === 0 ? 'every promise kept' : `${broken.length} broken promises`);
}
