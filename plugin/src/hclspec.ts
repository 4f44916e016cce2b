import type { Spec } from '../../proto/gen/nomad/plugins/shared/hclspec/hcl_spec';

/**
 * Builders for the hclspec messages Nomad decodes `config {}` blocks with. An attribute with a default is
 * `Default{primary: Attr, default: Literal}`; the Attr inside a Default gets no implied name from the
 * enclosing Object, so it always carries its own.
 */
export function object(attributes: Readonly<Record<string, Spec>>): Spec {
  const entries = Object.entries(attributes).map(([key, value]) => ({ key, value }));
  return { block: { $case: 'object', object: { attributes: entries } } };
}

/** An attribute of an HCL type expression (`string`, `bool`, `list(string)`, …). */
export function attr(name: string, type: string, required = false): Spec {
  return { block: { $case: 'Attr', Attr: { name, type, required } } };
}

/** An optional attribute whose value is `literal` (an HCL expression) when unset. */
export function withDefault(name: string, type: string, literal: string): Spec {
  return {
    block: {
      $case: 'default',
      default: { primary: attr(name, type), default: { block: { $case: 'literal', literal: { value: literal } } } },
    },
  };
}

/** An HCL string literal expression. */
export function quoted(value: string): string {
  return JSON.stringify(value);
}
