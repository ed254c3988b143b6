package config

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/google/jsonschema-go/jsonschema"

	"github.com/agentstream/agentstream/tools"
)

// Tool is a tool declared in the config (tools:), an HTTP tool: each call
// the model makes is one HTTP request, whose answer the model reads.
// Agents name it in their tools, beside the built-in ones. See
// docs/tools.md.
type Tool struct {
	// Name is what agents and the model call it: 1 to 64 letters, digits,
	// _ or -, unlike any built-in tool or other declared tool. Required.
	Name string `yaml:"name"`
	// Description tells the model what the tool does and when to use it.
	// Default empty.
	Description string `yaml:"description"`
	// Parameters is the JSON Schema of the arguments object, written in
	// YAML; the model's arguments are checked against it before each
	// call. Default: any object.
	Parameters map[string]any `yaml:"parameters"`
	// HTTP is the request each call makes. Required.
	HTTP HTTPTool `yaml:"http"`
	// Forward sends the run's user id and chosen context keys as
	// headers. Default: nothing.
	Forward Forward `yaml:"forward"`
}

// HTTPTool is the request of an HTTP tool.
type HTTPTool struct {
	// URL is the endpoint, http:// or https://. Required. May hold
	// ${NAME}, read from the environment.
	URL string `yaml:"url" expand:"plain"`
	// Method is GET, POST, PUT, PATCH or DELETE. POST, PUT and PATCH send
	// the arguments as the JSON body; GET and DELETE as query parameters
	// (strings as they are, other values as JSON). Default POST.
	Method string `yaml:"method"`
	// Headers are sent with every call. Their values may hold ${NAME},
	// read from the environment: what a variable brings in is a secret.
	// Default none.
	Headers map[string]string `yaml:"headers" expand:"secret"`
	// Timeout bounds each call. Default runs.tool_timeout.
	Timeout time.Duration `yaml:"timeout"`
	// MaxResponseBytes caps the answer: a larger one is a tool error.
	// Default 65536 (64 KiB).
	MaxResponseBytes int64 `yaml:"max_response_bytes"`
}

// Forward says which facts of the run a tool's server is told, as headers.
type Forward struct {
	// UserHeader, when set, is the header that carries the run's user id
	// (the API key's user, or "local"). Default none.
	UserHeader string `yaml:"user_header"`
	// ContextHeaders maps keys of the run's context to the header that
	// carries each (a string as it is, other values as JSON); a key the
	// run lacks sends no header. Default none.
	ContextHeaders map[string]string `yaml:"context_headers"`
}

// tools converts f.
func (f Forward) tools() tools.Forward {
	return tools.Forward{UserHeader: f.UserHeader, ContextHeaders: f.ContextHeaders}
}

// toolsWithDefaults returns the declared tools with their defaults, in a
// list of their own (WithDefaults must not change its receiver's).
func toolsWithDefaults(ts []Tool, toolTimeout time.Duration) []Tool {
	ts = slices.Clone(ts)
	for i := range ts {
		h := &ts[i].HTTP
		def(&h.Method, "POST")
		def(&h.Timeout, toolTimeout)
		def(&h.MaxResponseBytes, tools.DefaultMaxResponseBytes)
	}
	return ts
}

// NewHTTP returns the HTTP tool t declares, from a validated config; it
// logs its failed calls to logger (nil: no logs).
func (t Tool) NewHTTP(logger *slog.Logger) (*tools.HTTP, error) {
	params, err := t.schemaJSON()
	if err != nil {
		return nil, fmt.Errorf("tool %q: parameters: %v", t.Name, err)
	}
	return tools.NewHTTP(tools.HTTPConfig{
		Name: t.Name, Description: t.Description, Parameters: params,
		URL: t.HTTP.URL, Method: t.HTTP.Method, Headers: t.HTTP.Headers,
		Timeout: t.HTTP.Timeout, MaxResponseBytes: t.HTTP.MaxResponseBytes,
		Forward: t.Forward.tools(), Logger: logger,
	})
}

// schemaJSON is the tool's parameters as JSON; nil for none.
func (t Tool) schemaJSON() (json.RawMessage, error) {
	if t.Parameters == nil {
		return nil, nil
	}
	return json.Marshal(t.Parameters)
}

// toolName is what model APIs accept as a function's name.
var toolName = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)

// validateTools reports the problems of the declared tools, and returns
// the names agents may use: the built-in ones, then the declared ones.
func (c Config) validateTools(bad func(path, format string, args ...any)) []string {
	builtins := tools.Builtins(time.Now).Names()
	known := slices.Clone(builtins)
	declared := map[string]int{}
	for i, t := range c.Tools {
		path := fmt.Sprintf("tools[%d]", i)
		switch first, dup := declared[t.Name]; {
		case t.Name == "":
			bad(path+".name", "empty: every tool needs a name")
		case !toolName.MatchString(t.Name):
			bad(path+".name", "%q: a tool's name is 1 to 64 letters, digits, _ or - (what model APIs accept)", t.Name)
		case slices.Contains(builtins, t.Name):
			bad(path+".name", "%q is a built-in tool's name: choose another", t.Name)
		case dup:
			bad(path+".name", "tool %q is declared twice (also tools[%d]): rename or remove one", t.Name, first)
		default:
			declared[t.Name] = i
			known = append(known, t.Name)
		}
		validateSchema(t, path+".parameters", bad)
		h := t.HTTP
		if _, err := tools.ParseToolURL(h.URL); err != nil {
			bad(path+".http.url", "%v", err)
		}
		if !slices.Contains(tools.HTTPMethods, strings.ToUpper(h.Method)) {
			bad(path+".http.method", "%q is not one of %s", h.Method, strings.Join(tools.HTTPMethods, ", "))
		}
		validateHeaders(h.Headers, path+".http.headers", bad)
		if h.Timeout < 0 {
			bad(path+".http.timeout", "%v must not be negative", h.Timeout)
		}
		if h.MaxResponseBytes < 0 {
			bad(path+".http.max_response_bytes", "%d must not be negative", h.MaxResponseBytes)
		}
		t.Forward.validate(path+".forward", h.Headers, bad)
	}
	return known
}

// validateSchema reports parameters that are not a JSON Schema of an
// object, compiled as the runner compiles it to check arguments.
func validateSchema(t Tool, path string, bad func(path, format string, args ...any)) {
	raw, err := t.schemaJSON()
	if err != nil {
		bad(path, "cannot be written as JSON: %v", err)
		return
	}
	if raw == nil {
		return
	}
	var s jsonschema.Schema
	if err := json.Unmarshal(raw, &s); err != nil {
		bad(path, "not a JSON Schema: %v", err)
		return
	}
	if _, err := s.Resolve(nil); err != nil {
		bad(path, "not a usable JSON Schema: %v", err)
	}
	if (slices.Contains(jsonTypes, s.Type) && s.Type != "object") || len(s.Types) > 0 {
		// Model APIs take an object of named arguments.
		bad(path+".type", "the arguments are an object: write type: object, with its properties")
	}
	// jsonschema-go accepts any type name; a model API refuses the
	// request of a run, so a misspelt one is found here.
	checkTypes(t.Parameters, path, bad)
}

// jsonTypes are the types a JSON Schema names.
var jsonTypes = []string{"array", "boolean", "integer", "null", "number", "object", "string"}

// checkTypes reports the type keywords of schema s (decoded from YAML) and
// of the schemas in it that name no JSON type.
func checkTypes(s any, path string, bad func(path, format string, args ...any)) {
	m, ok := s.(map[string]any)
	if !ok {
		return
	}
	switch t := m["type"].(type) {
	case string:
		if !slices.Contains(jsonTypes, t) {
			bad(path+".type", "%q is not a JSON type (%s)", t, strings.Join(jsonTypes, ", "))
		}
	case []any:
		for _, e := range t {
			if s, _ := e.(string); !slices.Contains(jsonTypes, s) {
				bad(path+".type", "%v is not a JSON type (%s)", e, strings.Join(jsonTypes, ", "))
			}
		}
	}
	for _, key := range []string{"items", "additionalProperties", "not", "if", "then", "else", "contains", "propertyNames", "unevaluatedProperties", "unevaluatedItems", "additionalItems"} {
		checkTypes(m[key], path+"."+key, bad)
	}
	for _, key := range []string{"allOf", "anyOf", "oneOf", "prefixItems"} {
		if list, ok := m[key].([]any); ok {
			for i, e := range list {
				checkTypes(e, fmt.Sprintf("%s.%s[%d]", path, key, i), bad)
			}
		}
	}
	for _, key := range []string{"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"} {
		if named, ok := m[key].(map[string]any); ok {
			for _, name := range slices.Sorted(maps.Keys(named)) {
				checkTypes(named[name], path+"."+key+"."+name, bad)
			}
		}
	}
}

// validateHeaders reports header names HTTP does not allow, and values a
// header cannot carry. A value is never quoted: it may be a secret.
func validateHeaders(h map[string]string, path string, bad func(path, format string, args ...any)) {
	for _, name := range sortedKeys(h) {
		if !validHeaderName(name) {
			bad(joinPath(path, name), "%q is not a header name (letters, digits and !#$%%&'*+-.^_`|~)", name)
		}
		if strings.ContainsFunc(h[name], func(r rune) bool { return (r < 0x20 && r != '\t') || r == 0x7f }) {
			bad(joinPath(path, name), "the value holds a line break or another control character, which a header cannot carry")
		}
	}
}

// validate reports forward's problems; headers are the tool's own, which
// a forwarded header must not replace.
func (f Forward) validate(path string, headers map[string]string, bad func(path, format string, args ...any)) {
	own := map[string]bool{}
	for name := range headers {
		own[strings.ToLower(name)] = true
	}
	seen := map[string]string{}
	check := func(p, name string) {
		switch {
		case !validHeaderName(name):
			bad(p, "%q is not a header name (letters, digits and !#$%%&'*+-.^_`|~)", name)
		case own[strings.ToLower(name)]:
			bad(p, "%q is also in http.headers: a header is either configured or forwarded", name)
		case seen[strings.ToLower(name)] != "":
			bad(p, "%q is already forwarded by %s", name, seen[strings.ToLower(name)])
		default:
			seen[strings.ToLower(name)] = p
		}
	}
	if f.UserHeader != "" {
		check(path+".user_header", f.UserHeader)
	}
	for _, key := range sortedKeys(f.ContextHeaders) {
		check(joinPath(path+".context_headers", key), f.ContextHeaders[key])
	}
}

// validHeaderName reports whether s is an HTTP header name (a token).
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		ok := (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
		if !ok {
			return false
		}
	}
	return true
}

func sortedKeys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }
