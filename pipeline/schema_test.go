package pipeline

import (
	"bytes"
	"encoding/json"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

type schemaProp struct {
	Type          any      `json:"type"`
	Enum          []string `json:"enum"`
	MaxLength     *int     `json:"maxLength"`
	MinLength     *int     `json:"minLength"`
	Pattern       string   `json:"pattern"`
	Minimum       *int     `json:"minimum"`
	MaxItems      *int     `json:"maxItems"`
	MaxProperties *int     `json:"maxProperties"`
	Items         *struct {
		Type      string `json:"type"`
		MaxLength int    `json:"maxLength"`
		MinLength int    `json:"minLength"`
		Pattern   string `json:"pattern"`
	} `json:"items"`
	AdditionalProperties *struct {
		Type      string `json:"type"`
		MaxLength int    `json:"maxLength"`
	} `json:"additionalProperties"`
	OneOf []struct {
		Type string `json:"type"`
	} `json:"oneOf"`
}

// schemaPropertyOrder returns the keys of the schema's "properties" object
// in document order.
func schemaPropertyOrder(t *testing.T) []string {
	var doc struct {
		Properties json.RawMessage `json:"properties"`
	}
	require.NoError(t, json.Unmarshal(Schema, &doc))
	dec := json.NewDecoder(bytes.NewReader(doc.Properties))
	_, err := dec.Token() // {
	require.NoError(t, err)
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		require.NoError(t, err)
		keys = append(keys, tok.(string))
		var skip json.RawMessage
		require.NoError(t, dec.Decode(&skip))
	}
	return keys
}

// TestSchemaMatchesDecoder keeps event.schema.json, the decoder's field
// table, the Event struct tags, Validate's required fields and the default
// limits from drifting apart.
func TestSchemaMatchesDecoder(t *testing.T) {
	var schema struct {
		Schema               string                `json:"$schema"`
		Type                 string                `json:"type"`
		Required             []string              `json:"required"`
		Properties           map[string]schemaProp `json:"properties"`
		AdditionalProperties bool                  `json:"additionalProperties"`
	}
	require.NoError(t, json.Unmarshal(Schema, &schema))
	require.Equal(t, "https://json-schema.org/draft/2020-12/schema", schema.Schema)
	require.Equal(t, "object", schema.Type)
	require.True(t, schema.AdditionalProperties, "unknown fields are allowed and kept")

	// Properties: same names, same order as the decoder and the struct.
	require.Equal(t, fieldNames[:], schemaPropertyOrder(t))
	var tags []string
	for f := range reflect.TypeFor[Event]().Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name != "-" {
			tags = append(tags, name)
		}
	}
	require.Equal(t, fieldNames[:], tags, "Event struct tags")
	for _, name := range fieldNames {
		require.Equal(t, name, fieldNames[lookupField([]byte(name))])
	}

	// Required: the schema's list is what Validate reports missing.
	var required []string
	for _, f := range requiredFields {
		required = append(required, fieldNames[f])
	}
	require.Equal(t, required, schema.Required)
	var empty Event
	var ve *ValidationError
	require.ErrorAs(t, empty.Validate(nil), &ve)
	var missing []string
	for _, p := range ve.Problems {
		require.Equal(t, "missing", p.Reason)
		missing = append(missing, p.Path)
	}
	require.Equal(t, schema.Required, missing)

	// Types follow the decoder's kinds; limits follow DefaultLimits.
	lim := DefaultLimits()
	for f, name := range fieldNames {
		p := schema.Properties[name]
		switch fieldKinds[f] {
		case kindString:
			require.Equal(t, "string", p.Type, name)
			switch {
			case p.Enum != nil:
				require.Nil(t, p.MaxLength, name)
			case name == "resource" || name == "destination":
				require.Equal(t, lim.MaxResourceLen, *p.MaxLength, name)
			default:
				require.Equal(t, lim.MaxStringLen, *p.MaxLength, name)
			}
		case kindInt:
			require.Equal(t, "integer", p.Type, name)
			require.Equal(t, 0, *p.Minimum, name)
		case kindTime:
			require.Len(t, p.OneOf, 2)
			require.Equal(t, "string", p.OneOf[0].Type)
			require.Equal(t, "integer", p.OneOf[1].Type)
		case kindStringList:
			require.Equal(t, "array", p.Type, name)
			require.Equal(t, lim.MaxScope, *p.MaxItems)
			require.Equal(t, "string", p.Items.Type)
			require.Equal(t, lim.MaxStringLen, p.Items.MaxLength)
			require.Equal(t, 1, p.Items.MinLength)
		case kindStringMap:
			require.Equal(t, "object", p.Type, name)
			require.Equal(t, lim.MaxAttrs, *p.MaxProperties)
			require.Equal(t, "string", p.AdditionalProperties.Type)
			require.Equal(t, lim.MaxStringLen, p.AdditionalProperties.MaxLength)
		}
		if slices.Contains(schema.Required, name) && fieldKinds[f] == kindString {
			require.Equal(t, 1, *p.MinLength, name)
		}
	}

	// Enums are exactly the constants.
	require.Equal(t, []string{SensitivityPublic, SensitivityInternal, SensitivityConfidential, SensitivityRestricted}, schema.Properties["sensitivity"].Enum)
	require.Equal(t, []string{OutcomeOK, OutcomeError, OutcomeDenied}, schema.Properties["outcome"].Enum)
	require.Equal(t, []string{ApprovalNone, ApprovalPending, ApprovalApproved, ApprovalRejected}, schema.Properties["approval"].Enum)
}

// TestSchemaIdentityPattern checks that the schema's pattern for identity
// fields accepts exactly what Validate's identity rule accepts.
func TestSchemaIdentityPattern(t *testing.T) {
	var schema struct {
		Properties map[string]schemaProp `json:"properties"`
	}
	require.NoError(t, json.Unmarshal(Schema, &schema))
	identities := []string{"id", "agent", "instance", "parent_agent", "principal", "session", "task", "tool", "credential", "trace"}
	pattern := schema.Properties["id"].Pattern
	require.NotEmpty(t, pattern)
	for name, p := range schema.Properties {
		if slices.Contains(identities, name) {
			require.Equal(t, pattern, p.Pattern, name)
		} else if name != "tenant" && name != "time" {
			require.Empty(t, p.Pattern, name)
		}
	}
	require.Equal(t, pattern, schema.Properties["task_scope"].Items.Pattern)

	// ECMA-262 \uXXXX escapes are \x{XXXX} in Go's RE2 syntax.
	re := regexp.MustCompile(regexp.MustCompile(`\\u([0-9a-fA-F]{4})`).ReplaceAllString(pattern, `\x{$1}`))
	v := validator{lim: DefaultLimits()}
	for _, s := range []string{
		"e1", "x", "a b", "jürgen@acme.example", "a\u00a0", "spiffe://acme.example/x",
		" e1", "e1 ", "\te1", "e1\n", "a\nb", "a\x00", "a\x1fb", "a\x7f", "bot\u0085", "bot\u009fx", " ", "\r",
	} {
		require.Equal(t, v.identityProblem(s) == "", re.MatchString(s), "%q", s)
	}
}
