import { decode, ExtData } from '@msgpack/msgpack';

/**
 * Reads the msgpack go-cty writes for a decoded `config {}` block (cty/msgpack Marshal): an object is a map
 * holding every attribute of the schema, unset ones as nil; a number is an int, a float, or a decimal string
 * when neither fits; lists and sets are arrays. Unknown values (an extension type) never reach a plugin at
 * task start, but are rejected here rather than misread.
 */
export function decodeCtyObject(
  bytes: Uint8Array,
  onError: (attribute: string, problem: string) => Error,
): Record<string, unknown> {
  if (bytes.length === 0) return {};
  let value: unknown;
  try {
    value = decode(bytes);
  } catch (cause) {
    throw onError('(root)', `not valid msgpack: ${cause instanceof Error ? cause.message : String(cause)}`);
  }
  if (value === null || value === undefined) return {};
  if (typeof value !== 'object' || Array.isArray(value) || value instanceof Uint8Array || value instanceof ExtData) {
    throw onError('(root)', 'expected an object');
  }
  for (const [key, item] of Object.entries(value as Record<string, unknown>)) {
    if (item instanceof ExtData) throw onError(key, 'value is not known yet (unknown cty value)');
  }
  return value as Record<string, unknown>;
}
