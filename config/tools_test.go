package config

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentstream/agentstream/tools"
)

// TestToolsDecode: a declared tool's keys, its parameters written in YAML
// as JSON Schema, its defaults, and the tool it makes.
func TestToolsDecode(t *testing.T) {
	t.Parallel()
	file := `runs:
  tool_timeout: 12s
tools:
  - name: lookup_order
    description: Look up an order
    parameters: {type: object, properties: {order_id: {type: string}}, required: [order_id]}
    http: {url: "https://shop.example/orders", method: get,
           headers: {Authorization: "Bearer x"}, timeout: 5s, max_response_bytes: 1000}
    forward: {user_header: X-User-Id, context_headers: {pregnancy_week: X-Pregnancy-Week}}
  - name: track
    parameters:
      type: object
      properties:
        parcel: {type: integer, minimum: 1}
    http:
      url: http://127.0.0.1:9/track
agents:
  - name: helper
    tools: [lookup_order, track, current_time]
`
	c, err := Load("c.yaml", []byte(file))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if len(c.Tools) != 2 || c.Tools[1].HTTP.Method != "" {
		t.Fatalf("tools %+v (Load leaves defaults out)", c.Tools)
	}
	d := c.WithDefaults()
	lookup, track := d.Tools[0], d.Tools[1]
	if lookup.HTTP.Method != "get" || lookup.HTTP.Timeout != 5*time.Second || lookup.HTTP.MaxResponseBytes != 1000 ||
		lookup.Forward.UserHeader != "X-User-Id" || lookup.Forward.ContextHeaders["pregnancy_week"] != "X-Pregnancy-Week" {
		t.Fatalf("lookup_order %+v", lookup)
	}
	if track.HTTP.Method != "POST" || track.HTTP.Timeout != 12*time.Second || track.HTTP.MaxResponseBytes != 64<<10 {
		t.Fatalf("track's defaults %+v", track.HTTP)
	}
	if c.Tools[1].HTTP.Method != "" {
		t.Fatal("WithDefaults changed the config it was called on")
	}
	tool, err := lookup.NewHTTP(nil)
	if err != nil {
		t.Fatalf("NewHTTP: %v", err)
	}
	spec := tool.Spec()
	var schema map[string]any
	if err := json.Unmarshal(spec.Parameters, &schema); err != nil {
		t.Fatal(err)
	}
	if spec.Name != "lookup_order" || spec.Description != "Look up an order" || tool.Timeout() != 5*time.Second ||
		string(spec.Parameters) != `{"properties":{"order_id":{"type":"string"}},"required":["order_id"],"type":"object"}` {
		t.Fatalf("spec %+v %s, timeout %v", spec, spec.Parameters, tool.Timeout())
	}
	if tool, err := track.NewHTTP(nil); err != nil || !strings.Contains(string(tool.Spec().Parameters), `"minimum":1`) {
		t.Fatalf("track: %v", err)
	}
}

// TestToolsProblems: each mistake in tools: is a problem at its line, and
// agents may name declared tools (and only those and the built-in ones).
func TestToolsProblems(t *testing.T) {
	t.Parallel()
	file := `tools:
  - name: current_time
    http: {url: "https://x.example/t"}
  - name: "bad name!"
    http: {url: "https://x.example/t"}
  - name: ok_tool
    parameters: {type: objekt}
    http:
      url: ftp://x.example/t
      method: TRACE
      timeout: -1s
      max_response_bytes: -5
      headers:
        "Bad Header": x
        X-Fine: fine
  - name: ok_tool
    parameters:
      type: object
      properties:
        m: {$ref: "#/nope"}
        n: {type: strin}
    http: {url: "https://x.example/t"}
  - name: arr
    parameters: {type: array}
    http: {}
    forward:
      user_header: X-Fine
      context_headers: {week: "no space"}
  - description: no name
    http: {url: "https://x.example/t", headers: {X-Fine: fine}}
    forward: {user_header: X-Fine}
agents:
  - name: helper
    tools: [ok_tool, arr, ok_tol]
`
	_, err := Load("c.yaml", []byte(file))
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("error %v, want Problems", err)
	}
	want := []struct {
		line int
		path string
		text string
	}{
		{2, "tools[0].name", `"current_time" is a built-in tool's name`},
		{4, "tools[1].name", `"bad name!": a tool's name is 1 to 64 letters`},
		{7, "tools[2].parameters.type", `"objekt" is not a JSON type`},
		{9, "tools[2].http.url", "must start with http:// or https://"},
		{10, "tools[2].http.method", `"TRACE" is not one of GET, POST, PUT, PATCH, DELETE`},
		{11, "tools[2].http.timeout", "must not be negative"},
		{12, "tools[2].http.max_response_bytes", "must not be negative"},
		{14, "tools[2].http.headers.Bad Header", `"Bad Header" is not a header name`},
		{16, "tools[3].name", `tool "ok_tool" is declared twice (also tools[2])`},
		{17, "tools[3].parameters", `not a usable JSON Schema`},
		{19, "tools[3].parameters.properties.n.type", `"strin" is not a JSON type`},
		{24, "tools[4].parameters.type", "the arguments are an object"},
		{25, "tools[4].http.url", "the url is empty"},
		{28, "tools[4].forward.context_headers.week", `"no space" is not a header name`},
		{29, "tools[5].name", "empty: every tool needs a name"},
		{31, "tools[5].forward.user_header", `"X-Fine" is also in http.headers`},
		{34, "agents[0].tools[2]", `unknown tool "ok_tol"; did you mean ok_tool?`},
	}
	for i, w := range want {
		if i >= len(ps) {
			t.Fatalf("only %d problems:\n%v", len(ps), err)
		}
		if p := ps[i]; p.Line != w.line || p.Path != w.path || !strings.Contains(p.Message, w.text) {
			t.Errorf("problem %d: %+v, want line %d, %s: %s", i, p, w.line, w.path, w.text)
		}
	}
	if len(ps) != len(want) {
		t.Fatalf("%d problems, want %d:\n%v", len(ps), len(want), err)
	}
}

// TestExampleHTTPTool: examples/http-tool.yaml loads without a network,
// with its secret read from the environment, and makes its tools.
func TestExampleHTTPTool(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(filepath.Join("..", "examples", "http-tool.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LoadEnv("http-tool.yaml", data, env(nil)); err == nil || !strings.Contains(err.Error(), "${SHOP_TOKEN} is not set") {
		t.Fatalf("without SHOP_TOKEN: %v", err)
	}
	c, err := LoadEnv("http-tool.yaml", data, env(map[string]string{"SHOP_TOKEN": "shop-secret-token"}))
	if err != nil {
		t.Fatalf("the example: %v", err)
	}
	c = c.WithDefaults()
	if c.DefaultAgent != "shop-helper" || len(c.Tools) != 2 || c.Tools[0].HTTP.Headers["Authorization"] != "Bearer shop-secret-token" {
		t.Fatalf("the example: %+v", c)
	}
	reg := tools.Builtins(time.Now)
	for _, tc := range c.Tools {
		tool, err := tc.NewHTTP(nil)
		if err != nil {
			t.Fatalf("%s: %v", tc.Name, err)
		}
		if err := reg.Add(tool); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range c.Agents[len(c.Agents)-1].Tools {
		if reg[name] == nil {
			t.Fatalf("the agent names %q, which is not a tool", name)
		}
	}
	if got := c.Secrets(); len(got) != 1 || got[0] != "shop-secret-token" {
		t.Fatalf("Secrets() = %q", got)
	}
}

// TestDecodeMaps: a mapping setting (http.headers) is read entry by entry:
// each mistake is a problem at its line, merge keys work, and the rest of
// the file is still read.
func TestDecodeMaps(t *testing.T) {
	t.Parallel()
	file := `common: &common
  X-Shop: demo
  X-Env: prod
tools:
  - name: a
    http:
      url: https://x.example/a
      headers:
        <<: *common
        X-Env: staging
        X-Count: 5
  - name: b
    http:
      url: https://x.example/b
      headers:
        X-One: a
        X-One: b
        X-Nested: {deep: 1}
  - name: c
    http: {url: "https://x.example/c", headers: [X-List]}
`
	c, err := Decode([]byte(file))
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("error %v, want Problems", err)
	}
	want := []struct {
		line int
		path string
		text string
	}{
		{1, "common", "unknown key"},
		{17, "tools[1].http.headers.X-One", "set twice (first on line 16)"},
		{18, "tools[1].http.headers.X-Nested", "want a single value, not a mapping"},
		{20, "tools[2].http.headers", "want a mapping (name: value lines), not a list"},
	}
	if len(ps) != len(want) {
		t.Fatalf("%d problems, want %d:\n%v", len(ps), len(want), err)
	}
	for i, w := range want {
		if p := ps[i]; p.Line != w.line || p.Path != w.path || !strings.Contains(p.Message, w.text) {
			t.Errorf("problem %d: %+v, want line %d, %s: %s", i, p, w.line, w.path, w.text)
		}
	}
	h := c.Tools[0].HTTP.Headers
	if len(h) != 3 || h["X-Shop"] != "demo" || h["X-Env"] != "staging" || h["X-Count"] != "5" {
		t.Fatalf("headers %v: want the merged ones, overridden by the mapping's own", h)
	}
	if c.Tools[1].HTTP.Headers["X-One"] != "a" || c.Tools[2].HTTP.URL != "https://x.example/c" {
		t.Fatalf("the rest of the file: %+v", c.Tools[1:])
	}
}
