import { ConfigError } from '../../../../common/config-error';
import { chooseIdMapping } from '../../../../sidecar/src/runtime/id-mapping-choice';

const mapping = { hostId: 100_000, size: 65_536 };
const refused = { userNamespaces: false, userNamespacesError: 'unshare: Operation not permitted', sysResource: false };

describe('chooseIdMapping', () => {
  it('gives tasks the configured range when the kernel allows a user namespace', () => {
    expect(chooseIdMapping('auto', mapping, { userNamespaces: true, sysResource: false })).toEqual({
      idMapping: mapping,
    });
    expect(chooseIdMapping('on', mapping, { userNamespaces: true, sysResource: true })).toEqual({ idMapping: mapping });
  });

  it('runs tasks in the node namespace under "auto" when refused, and says what that costs', () => {
    const choice = chooseIdMapping('auto', mapping, refused);
    expect(choice.idMapping).toBeUndefined();
    expect(choice.withoutReason).toContain('Operation not permitted');
    expect(choice.withoutReason).toContain('cannot be checkpointed');
  });

  it('refuses to start under "on" when refused, naming the field', () => {
    expect(() => chooseIdMapping('on', mapping, refused)).toThrow(ConfigError);
    expect(() => chooseIdMapping('on', mapping, refused)).toThrow(/userNamespace/);
  });

  it('never uses one under "off"', () => {
    expect(chooseIdMapping('off', mapping, undefined)).toEqual({ idMapping: undefined });
  });
});
