import { errorCode } from '../../../../common/errors';
import { negotiateVersion } from '../../../../sidecar/src/transfer/version';

describe('negotiateVersion', () => {
  it('picks the highest common version', () => {
    expect(negotiateVersion({ min: 1, max: 3 }, { min: 2, max: 5 })).toBe(3);
    expect(negotiateVersion({ min: 1, max: 1 }, { min: 1, max: 1 })).toBe(1);
  });
  it.each([
    [
      { min: 2, max: 2 },
      { min: 1, max: 1 },
    ],
    [
      { min: 1, max: 1 },
      { min: 2, max: 9 },
    ],
    [
      { min: 1, max: 1 },
      { min: 0, max: 0 },
    ],
  ])('refuses %o with %o', (local, peer) => {
    let code: string | undefined;
    try {
      negotiateVersion(local, peer);
    } catch (err) {
      code = errorCode(err);
    }
    expect(code).toBe('NC_TRANSFER_VERSION_MISMATCH');
  });
});
