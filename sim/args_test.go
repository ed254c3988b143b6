package sim

import (
	"encoding/json"
	"net"
	"net/mail"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/jsonschema-go/jsonschema"
)

// validate checks args against schema with the validator agentstream's
// runner uses, and the formats it leaves unchecked with the standard
// library; it returns the first problem, or nil.
func validate(t *testing.T, schema, args string) error {
	t.Helper()
	var s jsonschema.Schema
	if err := json.Unmarshal([]byte(schema), &s); err != nil {
		t.Fatalf("the test's schema %s: %v", schema, err)
	}
	rs, err := s.Resolve(nil)
	if err != nil {
		t.Fatalf("the test's schema %s: %v", schema, err)
	}
	var v any
	if err := json.Unmarshal([]byte(args), &v); err != nil {
		return err
	}
	if err := rs.Validate(v); err != nil {
		return err
	}
	return checkFormats(t, &s, v)
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// checkFormats checks the format of every string of v that s (a schema
// without references) gives one.
func checkFormats(t *testing.T, s *jsonschema.Schema, v any) error {
	t.Helper()
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if p := s.Properties[k]; p != nil {
				if err := checkFormats(t, p, x); err != nil {
					return err
				}
			}
		}
	case []any:
		for _, x := range v {
			if s.Items != nil {
				if err := checkFormats(t, s.Items, x); err != nil {
					return err
				}
			}
		}
	case string:
		var err error
		switch s.Format {
		case "date":
			_, err = time.Parse(time.DateOnly, v)
		case "date-time":
			_, err = time.Parse(time.RFC3339, v)
		case "time":
			_, err = time.Parse("15:04:05Z07:00", v)
		case "email":
			_, err = mail.ParseAddress(v)
		case "uri":
			var u *url.URL
			if u, err = url.Parse(v); err == nil && (u.Scheme == "" || u.Host == "") {
				err = errFormat
			}
		case "ipv4":
			if ip := net.ParseIP(v); ip == nil || ip.To4() == nil {
				err = errFormat
			}
		case "ipv6":
			if ip := net.ParseIP(v); ip == nil || ip.To4() != nil {
				err = errFormat
			}
		case "uuid":
			if !uuidRE.MatchString(v) {
				err = errFormat
			}
		}
		return err
	}
	return nil
}

type formatError struct{}

func (formatError) Error() string { return "not of its format" }

var errFormat = formatError{}

func TestSampleArguments(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, schema, want string
		// unchecked: the validator cannot read the schema (draft 4, a
		// keyword of the wrong shape, no schema), or nothing can meet it.
		unchecked bool
	}{
		{"no schema", ``, `{}`, true},
		{"not JSON", `not json`, `{}`, true},
		{"true", `true`, `{}`, false},
		{"an empty object schema", `{"type": "object"}`, `{}`, false},
		{"optional properties are left out", `{"type":"object","properties":{"a":{"type":"string"}}}`, `{}`, false},
		{"required first, in their order, once; const; minimum",
			`{"required": ["b", "a", "b"], "properties": {"a": {"const": 7, "default": 1}, "b": {"type": "number", "minimum": 5}}}`, `{"b":5,"a":7}`, false},
		{"an example, verbatim", `{"required": ["x"], "properties": {"x": {"examples": [ {"deep" : [1, 2]} ]}}}`, `{"x":{"deep":[1,2]}}`, false},
		{"an example of another type is skipped", `{"required": ["x"], "properties": {"x": {"type": "string", "examples": [5, "Europe/Paris"], "default": "UTC"}}}`, `{"x":"Europe/Paris"}`, false},
		{"a default of another type is skipped", `{"required": ["x"], "properties": {"x": {"type": "string", "default": null}}}`, `{"x":"example"}`, false},
		{"a default", `{"required": ["x"], "properties": {"x": {"type": "integer", "default": 30}}}`, `{"x":30}`, false},
		{"the first enum value", `{"required": ["u"], "properties": {"u": {"type": "string", "enum": ["celsius", "fahrenheit"]}}}`, `{"u":"celsius"}`, false},
		{"an example out of the enum is skipped", `{"required": ["u"], "properties": {"u": {"enum": ["celsius", "fahrenheit"], "examples": ["kelvin", "fahrenheit"]}}}`, `{"u":"fahrenheit"}`, false},
		{"const null", `{"required": ["x"], "properties": {"x": {"const": null}}}`, `{"x":null}`, false},
		{"null only", `{"required": ["x"], "properties": {"x": {"type": ["null"]}}}`, `{"x":null}`, false},
		{"nullable", `{"required": ["x"], "properties": {"x": {"type": ["null", "integer"]}}}`, `{"x":1}`, false},
		{"untyped", `{"required": ["x"]}`, `{"x":"example"}`, false},
		{"quoted names", `{"required": ["q\"uote"], "properties": {"q\"uote": {"type": "boolean"}}}`, `{"q\"uote":true}`, false},
		{"formats", `{"type": "object", "required": ["d", "dt", "t", "e", "u", "id", "v4", "v6", "h", "p"], "properties": {
			"d": {"type": "string", "format": "date"}, "dt": {"type": "string", "format": "date-time"}, "t": {"type": "string", "format": "time"},
			"e": {"type": "string", "format": "email"}, "u": {"type": "string", "format": "uri"}, "id": {"type": "string", "format": "uuid"},
			"v4": {"type": "string", "format": "ipv4"}, "v6": {"type": "string", "format": "ipv6"}, "h": {"type": "string", "format": "hostname"},
			"p": {"type": "string", "format": "duration"}}}`,
			`{"d":"2025-01-15","dt":"2025-01-15T09:30:00Z","t":"09:30:00Z","e":"user@example.com","u":"https://example.com/",` +
				`"id":"123e4567-e89b-42d3-a456-426614174000","v4":"192.0.2.1","v6":"2001:db8::1","h":"host.example.com","p":"P1D"}`, false},
		{"a format's example", `{"required": ["d"], "properties": {"d": {"type": "string", "format": "date", "examples": ["2026-06-01"]}}}`, `{"d":"2026-06-01"}`, false},
		{"a pattern's example", `{"required": ["o"], "properties": {"o": {"type": "string", "pattern": "^[A-Z]-[0-9]{4}$", "examples": ["A-1001"]}}}`, `{"o":"A-1001"}`, false},
		{"lengths", `{"required": ["long", "short"], "properties": {"long": {"type": "string", "minLength": 10}, "short": {"type": "string", "maxLength": 3}}}`,
			`{"long":"examplexxx","short":"exa"}`, false},
		{"integer bounds", `{"type": "object", "required": ["min", "max", "xmin", "xmax", "mult", "minmult", "range"], "properties": {
			"min": {"type": "integer", "minimum": 5}, "max": {"type": "integer", "maximum": 0}, "xmin": {"type": "integer", "exclusiveMinimum": 1},
			"xmax": {"type": "integer", "exclusiveMaximum": 1}, "mult": {"type": "integer", "multipleOf": 5},
			"minmult": {"type": "integer", "minimum": 3, "multipleOf": 2}, "range": {"type": "integer", "minimum": 10, "maximum": 20, "multipleOf": 7}}}`,
			`{"min":5,"max":0,"xmin":2,"xmax":0,"mult":5,"minmult":4,"range":14}`, false},
		{"number bounds", `{"type": "object", "required": ["open", "half", "x"], "properties": {
			"open": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1}, "half": {"type": "number", "maximum": 0.5},
			"x": {"type": "number", "minimum": 0.1, "maximum": 0.2}}}`, `{"open":0.75,"half":0.5,"x":0.2}`, false},
		{"draft 4 exclusive minimum", `{"required": ["n"], "properties": {"n": {"type": "integer", "minimum": 1, "exclusiveMinimum": true}}}`, `{"n":2}`, true},
		{"a keyword of the wrong shape is ignored", `{"required": ["n"], "properties": {"n": {"type": "integer", "minimum": "five"}}}`, `{"n":1}`, true},
		{"arrays", `{"type": "object", "required": ["one", "three", "none", "enum", "tuple", "objects"], "properties": {
			"one": {"type": "array", "items": {"type": "string"}},
			"three": {"type": "array", "items": {"type": "string"}, "minItems": 3, "uniqueItems": true},
			"none": {"type": "array", "maxItems": 0},
			"enum": {"type": "array", "items": {"enum": ["a", "b", "c"]}, "minItems": 2, "uniqueItems": true},
			"tuple": {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string", "format": "date"}], "items": false},
			"objects": {"type": "array", "items": {"type": "object", "required": ["id"], "properties": {"id": {"type": "integer", "minimum": 7}}}}}}`,
			`{"one":["example"],"three":["example","example-2","example-3"],"none":[],"enum":["a","b"],"tuple":[1,"2025-01-16"],"objects":[{"id":7}]}`, false},
		{"nested objects", `{"type": "object", "required": ["a"], "properties": {"a": {"type": "object", "required": ["b"], "properties": {"b": {"type": "object", "required": ["c"], "properties": {"c": {"type": "boolean"}}}}}}}`,
			`{"a":{"b":{"c":true}}}`, false},
		{"minProperties", `{"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}, "c": {}}, "minProperties": 2}`, `{"a":"example","b":1}`, false},
		{"$defs", `{"type": "object", "required": ["a"], "properties": {"a": {"$ref": "#/$defs/addr"}},
			"$defs": {"addr": {"type": "object", "required": ["city"], "properties": {"city": {"type": "string", "examples": ["Paris"]}}}}}`, `{"a":{"city":"Paris"}}`, false},
		{"definitions", `{"type": "object", "required": ["a"], "properties": {"a": {"$ref": "#/definitions/n"}}, "definitions": {"n": {"type": "integer", "minimum": 4}}}`, `{"a":4}`, false},
		{"an unknown $ref", `{"required": ["a"], "properties": {"a": {"$ref": "#/$defs/nothing", "type": "integer"}}}`, `{"a":1}`, true},
		{"allOf", `{"allOf": [{"required": ["a"], "properties": {"a": {"type": "integer"}}}, {"required": ["b"], "properties": {"b": {"type": "boolean"}}}]}`, `{"a":1,"b":true}`, false},
		{"anyOf: the first branch", `{"type": "object", "required": ["v"], "properties": {"v": {"anyOf": [{"type": "integer", "minimum": 3}, {"type": "string"}]}}}`, `{"v":3}`, false},
		{"oneOf: the first branch", `{"type": "object", "required": ["v"], "properties": {"v": {"oneOf": [{"type": "string", "enum": ["x"]}, {"type": "integer"}]}}}`, `{"v":"x"}`, false},
		{"oneOf of required sets", `{"type": "object", "properties": {"id": {"type": "string"}, "email": {"type": "string", "format": "email"}},
			"oneOf": [{"required": ["email"]}, {"required": ["id"]}]}`, `{"email":"user@example.com"}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := SampleArguments(json.RawMessage(tt.schema))
			if got != tt.want {
				t.Errorf("SampleArguments(%s)\n= %s\nwant %s", tt.schema, got, tt.want)
			}
			if !json.Valid([]byte(got)) || got[0] != '{' {
				t.Fatalf("%s is not a JSON object", got)
			}
			if !tt.unchecked {
				if err := validate(t, tt.schema, got); err != nil {
					t.Errorf("%s does not match its schema: %v", got, err)
				}
			}
			if again := SampleArguments(json.RawMessage(tt.schema)); again != got {
				t.Errorf("not deterministic: %s, then %s", got, again)
			}
		})
	}
}

// TestSampleArgumentsBounded: recursive and huge schemas give small
// answers.
func TestSampleArgumentsBounded(t *testing.T) {
	t.Parallel()
	self := `{"type": "object", "required": ["r"], "properties": {"r": {"$ref": "#"}}}`
	deep := `{"type":"object","required":["n"],"properties":{"n":` + strings.Repeat(`{"type":"object","required":["n"],"properties":{"n":`, 20) +
		`{}` + strings.Repeat(`}}`, 20) + `}}`
	cycle := `{"required": ["a"], "properties": {"a": {"$ref": "#/$defs/x"}}, "$defs": {"x": {"$ref": "#/$defs/y"}, "y": {"allOf": [{"$ref": "#/$defs/x"}]}}}`
	wide := `{"type": "array", "minItems": 16, "items": `
	huge := `{"required": ["a"], "properties": {"a": ` + strings.Repeat(wide, 5) + `{"type": "string", "minLength": 100000}` + strings.Repeat("}", 5) + `}}`
	many := `{"required": ["a"], "properties": {"a": {"type": "array", "minItems": 100, "items": {"type": "integer"}}}}`
	for _, schema := range []string{self, deep, cycle, huge, many} {
		got := SampleArguments(json.RawMessage(schema))
		if !json.Valid([]byte(got)) || got[0] != '{' || strings.Count(got, "{") > maxDepth+2 || len(got) > 2*maxValues*maxStringLen {
			t.Errorf("%.60s…: %.200s (%d bytes)", schema, got, len(got))
		}
	}
	if got := SampleArguments(json.RawMessage(many)); strings.Count(got, ",") != maxArrayItems-1 {
		t.Errorf("minItems 100 gave %s, want %d items", got, maxArrayItems)
	}
}

func TestWrongArguments(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, schema, want string
		// accepted: nothing in the schema can be broken.
		accepted bool
	}{
		{"a required string gets a number", `{"type":"object","properties":{"order_id":{"type":"string","examples":["A-1001"]}},"required":["order_id"],"additionalProperties":false}`,
			`{"order_id":12345}`, false},
		{"an optional property, when none is required", `{"type":"object","properties":{"timezone":{"type":"string"}},"additionalProperties":false}`,
			`{"timezone":12345}`, false},
		{"a number gets a string", `{"required": ["n"], "properties": {"n": {"type": "number"}}}`, `{"n":"wrong"}`, false},
		{"the first typed one of the required", `{"required": ["a", "b"], "properties": {"a": {}, "b": {"type": "integer"}}}`, `{"a":"example","b":"wrong"}`, false},
		{"out of the enum", `{"required": ["u"], "properties": {"u": {"enum": ["a", "b"]}}}`, `{"u":"wrong-value"}`, false},
		{"another const", `{"required": ["u"], "properties": {"u": {"const": "wrong-value"}}}`, `{"u":12345}`, false},
		{"a date gets a number", `{"required": ["last_period"], "properties": {"last_period": {"type": "string", "format": "date"}}}`, `{"last_period":12345}`, false},
		{"a required untyped one left out", `{"required": ["x"]}`, `{}`, false},
		{"every type allowed: left out", `{"required": ["x"], "properties": {"x": {"type": ["string", "number", "boolean", "object", "array", "null"]}}}`, `{}`, false},
		{"an unexpected property", `{"type": "object", "properties": {"a": {}}, "additionalProperties": false}`, `{"unexpected_argument":true}`, false},
		{"an unexpected property beside a required one", `{"type": "object", "properties": {"a": {"minimum": 1}}, "minProperties": 1, "additionalProperties": false}`,
			`{"a":1,"unexpected_argument":true}`, false},
		{"an array for an object", `{"type": "object"}`, `[]`, false},
		{"an array for anything", `{}`, `[]`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := WrongArguments(json.RawMessage(tt.schema))
			if got != tt.want {
				t.Errorf("WrongArguments(%s)\n= %s\nwant %s", tt.schema, got, tt.want)
			}
			if err := validate(t, tt.schema, got); (err == nil) != tt.accepted {
				t.Errorf("%s: validation says %v", got, err)
			}
			if right := SampleArguments(json.RawMessage(tt.schema)); right == got {
				t.Errorf("the wrong arguments are the sample ones: %s", got)
			}
		})
	}
}

// TestValidateCatches: the checks the tests above rely on do fail.
func TestValidateCatches(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ schema, args string }{
		{`{"required": ["d"], "properties": {"d": {"type": "string", "format": "date"}}}`, `{"d":"2025-13-01"}`},
		{`{"required": ["d"], "properties": {"d": {"type": "string", "format": "uuid"}}}`, `{"d":"x"}`},
		{`{"type": "object", "properties": {"d": {"type": "array", "items": {"type": "string", "format": "ipv4"}}}}`, `{"d":["2001:db8::1"]}`},
		{`{"required": ["n"], "properties": {"n": {"type": "integer", "multipleOf": 7}}}`, `{"n":8}`},
	} {
		if err := validate(t, c.schema, c.args); err == nil {
			t.Errorf("%s accepted %s", c.schema, c.args)
		}
	}
}
