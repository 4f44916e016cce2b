import { errorCode } from '../../../../common/errors';
import { parseArgs } from '../../../../forecaster/src/cli/args';

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return errorCode(err);
  }
  return undefined;
}

describe('forecast CLI arguments', () => {
  it('parses evaluate with its flags', () => {
    expect(
      parseArgs(['evaluate', '--trace', 't.csv', '--model', 'm', '--json', '--report', 'r.html', '--format', 'parcae']),
    ).toEqual({
      command: 'evaluate',
      trace: 't.csv',
      model: 'm',
      json: true,
      leaveOut: false,
      report: 'r.html',
      format: 'parcae',
    });
  });

  it('parses the pooled traces, leave-one-out and the budget, refusing values out of range', () => {
    expect(
      parseArgs([
        'evaluate',
        '--trace',
        't.csv',
        '--train-traces',
        'a.csv,b.csv',
        '--leave-out',
        '--max-fenced-share',
        '0.02',
        '--max-false-drains',
        '0',
        '--migration-s',
        '90',
      ]),
    ).toMatchObject({
      trainTraces: 'a.csv,b.csv',
      leaveOut: true,
      maxFencedShare: '0.02',
      maxFalseDrains: '0',
      migrationS: '90',
    });
    expect(codeOf(() => parseArgs(['evaluate', '--trace', 't', '--leave-out']))).toBe('NC_FORECAST_USAGE');
    expect(codeOf(() => parseArgs(['evaluate', '--trace', 't', '--max-fenced-share', '0']))).toBe('NC_FORECAST_USAGE');
    expect(codeOf(() => parseArgs(['evaluate', '--trace', 't', '--max-fenced-share', '1.5']))).toBe(
      'NC_FORECAST_USAGE',
    );
    expect(codeOf(() => parseArgs(['train', '--trace', 't', '--out', 'o', '--max-false-drains', '-1']))).toBe(
      'NC_FORECAST_USAGE',
    );
    expect(codeOf(() => parseArgs(['evaluate', '--trace', 't', '--migration-s', 'soon']))).toBe('NC_FORECAST_USAGE');
    expect(codeOf(() => parseArgs(['train', '--trace', 't', '--out', 'o', '--leave-out']))).toBe('NC_FORECAST_USAGE');
    expect(parseArgs(['results', '--data', 'd', '--readme', 'r.md'])).toMatchObject({ data: 'd', readme: 'r.md' });
    expect(codeOf(() => parseArgs(['results']))).toBe('NC_FORECAST_USAGE');
  });

  it('parses train and requires --out', () => {
    expect(parseArgs(['train', '--trace', 't.csv', '--out', 'dir'])).toMatchObject({ command: 'train', out: 'dir' });
    expect(codeOf(() => parseArgs(['train', '--trace', 't.csv']))).toBe('NC_FORECAST_USAGE');
  });

  it('refuses unknown commands, unknown flags and flags without values', () => {
    expect(codeOf(() => parseArgs(['predict']))).toBe('NC_FORECAST_USAGE');
    expect(codeOf(() => parseArgs(['evaluate', '--trace', 't', '--out', 'x']))).toBe('NC_FORECAST_USAGE');
    expect(codeOf(() => parseArgs(['evaluate', '--trace']))).toBe('NC_FORECAST_USAGE');
    expect(codeOf(() => parseArgs(['evaluate', '--trace', '--json']))).toBe('NC_FORECAST_USAGE');
  });

  it('parses retrain, which needs a trace and a registry', () => {
    expect(parseArgs(['retrain', '--trace', 't.csv', '--registry', 'r'])).toMatchObject({
      command: 'retrain',
      registry: 'r',
    });
    expect(codeOf(() => parseArgs(['retrain', '--trace', 't.csv']))).toBe('NC_FORECAST_USAGE');
  });

  it('returns a frozen object', () => {
    expect(Object.isFrozen(parseArgs(['rollback', '--registry', 'r']))).toBe(true);
  });
});
