import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { currentModelDir } from '../../../forecaster/src/model/model-registry';

describe('currentModelDir (the registry the forecaster serves from)', () => {
  let root: string;
  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'nc-registry-'));
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));
  const index = (body: string): void => writeFileSync(join(root, 'registry.json'), body);

  it('is undefined until something is promoted', async () => {
    await expect(currentModelDir(root)).resolves.toBeUndefined();
    index('{"current": null, "history": [], "decisions": []}');
    await expect(currentModelDir(root)).resolves.toBeUndefined();
  });

  it("names the current version's folder", async () => {
    index('{"current": "20261125T093000Z-3f2a9c1b", "history": ["20261125T093000Z-3f2a9c1b"], "decisions": []}');
    await expect(currentModelDir(root)).resolves.toBe(join(root, 'versions', '20261125T093000Z-3f2a9c1b'));
  });

  it.each(['{"current": ', '{"current": "../../etc"}', '{"current": 3}', '{"current": ""}'])(
    'refuses %s with NC_MODEL_REGISTRY_INVALID',
    async (body) => {
      index(body);
      await expect(currentModelDir(root)).rejects.toMatchObject({ code: 'NC_MODEL_REGISTRY_INVALID' });
    },
  );

  it('refuses an index it cannot read', async () => {
    mkdirSync(join(root, 'registry.json'));
    await expect(currentModelDir(root)).rejects.toMatchObject({ code: 'NC_MODEL_REGISTRY_INVALID' });
  });
});
