package plugincontract

import (
	"fmt"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/typeexpr"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	ctymsgpack "github.com/zclconf/go-cty/cty/msgpack"

	"nomad-chain/contract/gen/nomad/hclspec"
)

// toHcldec converts the plugin's hclspec into an hcldec spec the way Nomad's hclspecutils does for the
// kinds the plugin uses: an Object's keys are implied names, a Default's primary gets none (so its Attr
// must name itself), Literal values are HCL expressions, types are HCL type expressions.
func toHcldec(spec *hclspec.Spec, impliedName string) (hcldec.Spec, error) {
	switch block := spec.GetBlock().(type) {
	case *hclspec.Spec_Object:
		object := hcldec.ObjectSpec{}
		for _, entry := range block.Object.GetAttributes() {
			name := entry.GetKey()
			converted, err := toHcldec(entry.GetValue(), name)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			object[name] = converted
		}
		return object, nil
	case *hclspec.Spec_Attr:
		name := block.Attr.GetName()
		if name == "" {
			name = impliedName
		}
		if name == "" {
			return nil, fmt.Errorf("Missing name in attribute spec")
		}
		ty := cty.DynamicPseudoType
		if block.Attr.GetType() != "" {
			expr, diags := hclsyntax.ParseExpression([]byte(block.Attr.GetType()), "type", hcl.InitialPos)
			if diags.HasErrors() {
				return nil, diags
			}
			var typeDiags hcl.Diagnostics
			ty, typeDiags = typeexpr.TypeConstraint(expr)
			if typeDiags.HasErrors() {
				return nil, typeDiags
			}
		}
		return &hcldec.AttrSpec{Name: name, Type: ty, Required: block.Attr.GetRequired()}, nil
	case *hclspec.Spec_Default:
		primary, err := toHcldec(block.Default.GetPrimary(), "")
		if err != nil {
			return nil, fmt.Errorf("default primary: %w", err)
		}
		fallback, err := toHcldec(block.Default.GetDefault(), "")
		if err != nil {
			return nil, fmt.Errorf("default value: %w", err)
		}
		return &hcldec.DefaultSpec{Primary: primary, Default: fallback}, nil
	case *hclspec.Spec_Literal:
		expr, diags := hclsyntax.ParseExpression([]byte(block.Literal.GetValue()), "literal", hcl.InitialPos)
		if diags.HasErrors() {
			return nil, diags
		}
		value, diags := expr.Value(nil)
		if diags.HasErrors() {
			return nil, diags
		}
		return &hcldec.LiteralSpec{Value: value}, nil
	default:
		return nil, fmt.Errorf("spec kind %T not used by the plugin", block)
	}
}

// encodeConfig decodes an HCL `config {}` body with the plugin's spec and encodes the result with go-cty's
// msgpack, as Nomad does for SetConfig's msgpack_config and TaskConfig's msgpack_driver_config.
func encodeConfig(t *testing.T, spec *hclspec.Spec, body string) []byte {
	t.Helper()
	encoded, diags := tryEncodeConfig(spec, body)
	if diags != nil {
		t.Fatalf("config %q: %v", body, diags)
	}
	return encoded
}

func tryEncodeConfig(spec *hclspec.Spec, body string) ([]byte, error) {
	decSpec, err := toHcldec(spec, "")
	if err != nil {
		return nil, fmt.Errorf("plugin spec not convertible: %w", err)
	}
	file, diags := hclsyntax.ParseConfig([]byte(body), "config.hcl", hcl.InitialPos)
	if diags.HasErrors() {
		return nil, diags
	}
	value, diags := hcldec.Decode(file.Body, decSpec, &hcl.EvalContext{})
	if diags.HasErrors() {
		return nil, diags
	}
	return ctymsgpack.Marshal(value, value.Type())
}
