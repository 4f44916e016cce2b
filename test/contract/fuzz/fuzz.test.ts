import { join } from 'node:path';
import { CONFIG_TARGETS, fuzzConfig } from '../../harness/fuzz/config-fuzz';
import { fuzzTransfer } from '../../harness/fuzz/transfer-fuzz';
import { makeCerts, makeCheckpointDir, removeAll, silentLogger, tempDir } from '../transfer/fixtures';

// The fast subset of `npm run fuzz` (issue #13: hostile and malformed input). A fixed seed, so a failure here
// reproduces with `npm run fuzz -- -seed 13 -iterations 3000`.
const SEED = 13;

describe.each(CONFIG_TARGETS.map((t) => [t.name, t] as const))(
  '%s decoder under mutated go-cty msgpack',
  (_, target) => {
    it('ends every input as a valid frozen config or its coded error naming an attribute', () => {
      const tally = fuzzConfig(target, 3000, SEED);
      expect(tally.defects).toEqual([]);
      expect(tally.counts.get(`refused ${target.code}`)).toBeGreaterThan(0);
      expect(tally.counts.get('accepted')).toBeGreaterThan(0);
    });
  },
);

describe('State Transfer Protocol server under mutated and hostile messages (real mTLS server, real store)', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await tempDir('fuzz');
  });
  afterAll(async () => removeAll(dir));

  it('answers each with success or a coded refusal, files nothing unsafe, and serves an honest push after', async () => {
    const certs = await makeCerts(join(dir, 'tls'), ['sender', 'receiver']);
    const { tally } = await fuzzTransfer({
      iterations: 3000,
      seed: SEED,
      workDir: dir,
      receiverTls: certs.receiver as (typeof certs)[string],
      senderTls: certs.sender as (typeof certs)[string],
      log: silentLogger(),
      honestDir: await makeCheckpointDir(join(dir, 'honest'), 64 * 1024),
    });
    expect(tally.defects).toEqual([]);
    const outcomes = Object.keys(tally.summary());
    for (const code of ['NC_TRANSFER_MANIFEST_INVALID', 'NC_TRANSFER_FRAME_INVALID', 'NC_TRANSFER_CHUNK_CORRUPT'])
      expect(outcomes).toContain(`refused ${code}`);
    expect(outcomes.some((o) => o.startsWith('honest push after fuzzing'))).toBe(true);
  });
});
