package config

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
)

// TestConcurrentForFileLimit: the default of runs.max_concurrent leaves
// two descriptors per running run, one per queued run and 256 for the
// rest, within its floor and cap; a value set stays.
func TestConcurrentForFileLimit(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		nofile uint64
		queued int
		want   int
	}{
		{20000, 1024, 4096},      // this machine: capped
		{1 << 20, 1024, 4096},    // Docker's limit
		{^uint64(0), 1024, 4096}, // unlimited
		{4096, 1024, 1408},       // (4096−1024−256)/2: still a thousand at once
		{4096, 0, 1920},          // no queue
		{3280, 1024, 1000},       // 2×1000+1024+256: the least that serves a thousand with the default queue
		{1024, 1024, 64},         // below the floor
		{0, 0, 64},
	} {
		if got := ConcurrentForFileLimit(tc.nofile, tc.queued); got != tc.want {
			t.Errorf("ConcurrentForFileLimit(%d, %d) = %d, want %d", tc.nofile, tc.queued, got, tc.want)
		}
		// With the default queue, the runs it allows, their clients and
		// the queue's fit the limit whenever the result is above the floor.
		if got := ConcurrentForFileLimit(tc.nofile, tc.queued); got > MinDefaultConcurrent &&
			uint64(2*got+tc.queued+ReservedFiles) > tc.nofile {
			t.Errorf("%d files: %d runs and %d queued need more", tc.nofile, got, tc.queued)
		}
	}
	c := Config{}.WithDefaults()
	if n := c.WithFileLimit(4096).Runs.MaxConcurrent; n != 1408 {
		t.Errorf("default queue, 4096 files: %d", n)
	}
	none := 0
	c.Runs.MaxQueued = &none
	if n := c.WithFileLimit(4096).Runs.MaxConcurrent; n != 1920 {
		t.Errorf("no queue, 4096 files: %d", n)
	}
	c.Runs.MaxConcurrent = 100
	if n := c.WithFileLimit(1 << 20).Runs.MaxConcurrent; n != 100 {
		t.Errorf("set to 100: %d after WithFileLimit", n)
	}
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	c := Config{}.WithDefaults()
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	if c.Addr != "127.0.0.1:8080" || c.DatabaseURL != "agentstream.db" || c.Model != SimModel || !c.UsesSim() {
		t.Fatalf("defaults: %+v", c)
	}
	if c.HTTP.Heartbeat != 15*time.Second || c.Runs.MaxConcurrent != 0 || *c.Runs.MaxQueued != 1024 || *c.OpenAI.MaxRetries != 2 || c.EventLog.RedisPrefix != "agentstream:" ||
		c.EventLog.MaxFinishedBytes != 32<<20 || c.EventLog.MaxTotalBytes != 256<<20 {
		t.Fatalf("defaults: %+v", c)
	}
	// runs.max_concurrent comes from the open-file limit, once known.
	if n := c.WithFileLimit(20000).Runs.MaxConcurrent; n != 4096 {
		t.Fatalf("max_concurrent with 20,000 files: %d, want 4096", n)
	}
	if len(c.Agents) != 1 || c.Agents[0].Name != "assistant" || c.Agents[0].Tools[0] != "current_time" {
		t.Fatalf("built-in agents: %+v", c.Agents)
	}
	withKey := Config{OpenAI: OpenAI{APIKey: "sk-test"}}.WithDefaults()
	if withKey.Model != "gpt-4o-mini" || withKey.UsesSim() || withKey.OpenAI.BaseURL != "https://api.openai.com/v1" {
		t.Fatalf("with an API key: %+v", withKey)
	}
	// A base URL without a key is a keyless server such as Ollama.
	keyless := Config{OpenAI: OpenAI{BaseURL: "http://127.0.0.1:11434/v1"}}.WithDefaults()
	if keyless.UsesSim() || keyless.OpenAI.BaseURL != "http://127.0.0.1:11434/v1" || keyless.Model != "gpt-4o-mini" {
		t.Fatalf("with a base URL only: %+v", keyless)
	}
}

func TestDecode(t *testing.T) {
	t.Parallel()
	c, err := Decode([]byte(`
addr: 127.0.0.1:9000
model: llama3
openai:
  base_url: http://127.0.0.1:11434/v1
  max_retries: 0
  idle_timeout: 5s
runs:
  max_concurrent: 2
  max_queued: 1
http:
  heartbeat: 250ms
event_log:
  redis_prefix: "staging:"
default_agent: helper
agents:
  - name: helper
    model: gpt-4o
    instructions: "Hello {{.name}}"
    tools: [current_time]
    max_turns: 3
    temperature: 0.2
`))
	if err != nil {
		t.Fatal(err)
	}
	c = c.WithDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Addr != "127.0.0.1:9000" || *c.OpenAI.MaxRetries != 0 || c.OpenAI.IdleTimeout != 5*time.Second ||
		c.HTTP.Heartbeat != 250*time.Millisecond || c.Runs.MaxConcurrent != 2 || *c.Runs.MaxQueued != 1 || c.EventLog.RedisPrefix != "staging:" {
		t.Fatalf("decoded: %+v", c)
	}
	if len(c.Agents) != 2 {
		t.Fatalf("agents: %+v", c.Agents)
	}
	h := c.Agents[1]
	if h.Name != "helper" || h.Model != "gpt-4o" || h.MaxTurns != 3 || *h.Temperature != 0.2 || h.Tools[0] != "current_time" {
		t.Fatalf("agent: %+v", h)
	}
}

// TestDecodeErrors: each kind of bad value is one problem, at the line
// and column of the value (or of the key, for a key), naming the setting
// and saying what to write instead.
func TestDecodeErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, yaml string
		line, col  int
		path, want string
	}{
		{"unknown key", "adr: x", 1, 1, "adr", "unknown key; did you mean addr?"},
		{"unknown key, other case", "runs:\n  Tool-Timeout: 5s", 2, 3, "runs.Tool-Timeout", "did you mean runs.tool_timeout?"},
		{"key of another section", "lease_ttl: 5s", 1, 1, "lease_ttl", "unknown key here; did you mean runs.lease_ttl?"},
		{"key of an agent at the top", "max_turns: 3", 1, 1, "max_turns", "did you mean agents[].max_turns?"},
		{"unknown key, no near name", "runs:\n  zzz: 1", 2, 3, "runs.zzz", "the keys here are max_concurrent, max_queued"},
		{"unknown key in an agent", "agents:\n  - name: a\n    tool: [x]", 3, 5, "agents[0].tool", "did you mean agents[0].tools?"},
		{"duration without unit", "runs:\n  tool_timeout: 30", 2, 17, "runs.tool_timeout", "30 is not a duration; durations need a unit, e.g. 30s"},
		{"quoted duration without unit", "runs:\n  tool_timeout: \"1.5\"", 2, 17, "runs.tool_timeout", "durations need a unit, e.g. 1.5s"},
		{"bad duration", "http:\n  heartbeat: soon", 2, 14, "http.heartbeat", `"soon" is not a duration; write a number and a unit`},
		{"list for a duration", "http:\n  heartbeat: [1s]", 2, 14, "http.heartbeat", "want a duration such as 30s, not a list"},
		{"wrong type", "runs:\n  max_concurrent: many", 2, 19, "runs.max_concurrent", `"many" is not a whole number`},
		{"quoted number", "runs:\n  max_concurrent: \"8\"", 2, 19, "runs.max_concurrent", "write the number without quotes"},
		{"fraction", "runs:\n  max_concurrent: 2.5", 2, 19, "runs.max_concurrent", "2.5 is not a whole number"},
		{"size with a unit", "http:\n  max_body_bytes: 1MiB", 2, 19, "http.max_body_bytes", "sizes are in bytes"},
		{"too large", "sim:\n  tokens: 99999999999999999999", 2, 11, "sim.tokens", "is too large"},
		{"not a boolean", "openai:\n  h2c: yes", 2, 8, "openai.h2c", `"yes" is not true or false`},
		{"not a number", "agents:\n  - name: a\n    temperature: warm", 3, 18, "agents[0].temperature", `"warm" is not a number`},
		{"list for a string", "addr: [a, b]", 1, 7, "addr", "want a single value, not a list"},
		{"scalar for a list", "agents:\n  - name: a\n    tools: current_time", 3, 12, "agents[0].tools", "want a list, e.g. [current_time]"},
		{"scalar for a section", "runs: fast", 1, 7, "runs", "want a mapping (key: value lines), not \"fast\""},
		{"list for the file", "- addr", 1, 1, "", "the config file must be a mapping"},
		{"key set twice", "addr: 127.0.0.1:1\naddr: 127.0.0.1:2", 2, 1, "addr", "set twice (first on line 1): keep one"},
		{"two documents", "addr: 127.0.0.1:1\n---\nmodel: x", 3, 1, "", "a second YAML document"},
		{"alias without anchor", "model: *m", 1, 8, "model", "the alias *m names no anchor"},
		{"not yaml", "addr: [", 1, 7, "", "YAML syntax"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Decode([]byte(tt.yaml))
			var ps Problems
			if !errors.As(err, &ps) || len(ps) != 1 {
				t.Fatalf("error %v, want one problem", err)
			}
			p := ps[0]
			if p.Line != tt.line || p.Col != tt.col || p.Path != tt.path || !strings.Contains(p.Message, tt.want) {
				t.Fatalf("problem %+v, want line %d col %d path %q message containing %q", p, tt.line, tt.col, tt.path, tt.want)
			}
		})
	}
}

// TestLoadEveryProblem: a file with five mistakes gets five problems,
// decoding and semantic ones together, sorted by line, each printed on a
// line of its own with the file name and its line.
func TestLoadEveryProblem(t *testing.T) {
	t.Parallel()
	file := `addr: 127.0.0.1:0
adr: x
runs:
  tool_timout: 5s
  checkpoint_interval: 30
http:
  heartbeat: soon
default_agent: helper
agents:
  - name: assistant
    tools: [current_time, weather]
`
	_, err := Load("agentstream.yaml", []byte(file))
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("error %v, want Problems", err)
	}
	want := []struct {
		line int
		path string
		text string
	}{
		{2, "adr", "unknown key; did you mean addr?"},
		{4, "runs.tool_timout", "unknown key; did you mean runs.tool_timeout?"},
		{5, "runs.checkpoint_interval", "30 is not a duration; durations need a unit, e.g. 30s"},
		{7, "http.heartbeat", `"soon" is not a duration`},
		{8, "default_agent", `"helper" is not among the agents (assistant)`},
		{11, "agents[0].tools[1]", `unknown tool "weather"; the tools are current_time, due_date`},
	}
	if len(ps) != len(want) {
		t.Fatalf("%d problems, want %d:\n%v", len(ps), len(want), err)
	}
	lines := strings.Split(err.Error(), "\n")
	for i, w := range want {
		p := ps[i]
		if p.Source != "agentstream.yaml" || p.Line != w.line || p.Path != w.path || !strings.Contains(p.Message, w.text) {
			t.Errorf("problem %d: %+v, want line %d, %s: %s", i, p, w.line, w.path, w.text)
		}
		if prefix := fmt.Sprintf("agentstream.yaml:%d:", w.line); !strings.HasPrefix(lines[i], prefix) || !strings.Contains(lines[i], w.path+": "+w.text) {
			t.Errorf("line %d of the error: %q, want %q…%s: %s", i, lines[i], prefix, w.path, w.text)
		}
	}
	if !strings.HasPrefix(lines[2], "agentstream.yaml:5:24: runs.checkpoint_interval: 30 is not a duration; durations need a unit, e.g. 30s") {
		t.Errorf("the duration's line: %q", lines[2])
	}
}

// TestLoadSemanticProblemsHaveLines: what Validate finds in a loaded file
// points at the offending key.
func TestLoadSemanticProblemsHaveLines(t *testing.T) {
	t.Parallel()
	file := `addr: 0.0.0.0:8080
runs:
  max_concurrent: -1
  on_disconnect: abandon
auth:
  keys:
    - key: short
agents:
  - name: helper
    max_turns: -3
    instructions: "{{.name"
  - name: helper
`
	c, err := Load("c.yaml", []byte(file))
	tests := []struct {
		line int
		path string
		text string
	}{
		{3, "runs.max_concurrent", "-1 must not be negative"},
		{4, "runs.on_disconnect", `must be continue or cancel, not "abandon"`},
		{7, "auth.keys[0].key", "at least 16 characters"},
		{7, "auth.keys[0].user", "empty"},
		{10, "agents[0].max_turns", "-3 must not be negative"},
		{11, "agents[0].instructions", "not a valid Go template"},
		{12, "agents[1].name", `agent "helper" is declared twice (also agents[0])`},
	}
	var ps Problems
	if !errors.As(err, &ps) || len(ps) != len(tests) {
		t.Fatalf("error:\n%v\nwant %d problems", err, len(tests))
	}
	for i, w := range tests {
		if p := ps[i]; p.Line != w.line || p.Path != w.path || !strings.Contains(p.Message, w.text) {
			t.Errorf("problem %d: %+v, want line %d, %s: %s", i, p, w.line, w.path, w.text)
		}
	}
	// The Config remembers its lines: Validate (as server.New calls it)
	// places its problems too.
	var again Problems
	if !errors.As(c.WithDefaults().Validate(), &again) || len(again) != len(tests) || again[0].Line != 3 {
		t.Fatalf("Validate of the loaded config: %v", again)
	}
	// What a value that could not be read (or a file that is not YAML)
	// leads Validate to is not reported besides.
	for _, bad := range []string{"agents: [foo]", "agents: [", "addr: [1]\nrunds: 1"} {
		if _, err := Load("c.yaml", []byte(bad)); err == nil || strings.Count(err.Error(), "\n") != strings.Count(bad, "\n") {
			t.Errorf("%q: %v, want one problem a line", bad, err)
		}
	}
	// A file with only a public address: the problem is at line 1.
	_, err = Load("c.yaml", []byte(file[:strings.Index(file, "runs:")]))
	if err == nil || !strings.HasPrefix(err.Error(), "c.yaml:1:1: addr: \"0.0.0.0:8080\" is not a loopback address") {
		t.Fatalf("error %v", err)
	}
}

func TestLoadOverrides(t *testing.T) {
	t.Parallel()
	// A value the file gets wrong is a problem even when overridden: the
	// file needs fixing. A value the file gets right that makes the whole
	// invalid is fine once overridden.
	if _, err := Load("c.yaml", []byte("runs:\n  lease_ttl: 5\n"), Override{Key: "runs.lease_ttl", Value: "5s", Origin: "env LEASE"}); err == nil ||
		!strings.Contains(err.Error(), "c.yaml:2:14: runs.lease_ttl: 5 is not a duration") {
		t.Fatalf("a bad value overridden: %v", err)
	}
	file := []byte("addr: 0.0.0.0:8080\nruns:\n  lease_ttl: 5s\n")
	if _, err := Load("c.yaml", file); err == nil || !strings.Contains(err.Error(), "c.yaml:1:1: addr:") {
		t.Fatalf("without overrides: %v", err)
	}
	if _, err := Load("", nil); err != nil {
		t.Fatalf("no file: %v", err)
	}
	c, err := Load("c.yaml", file,
		Override{Key: "addr", Value: "127.0.0.1:9", Origin: "flag --addr"},
		Override{Key: "runs.lease_ttl", Value: "20s", Origin: "env LEASE"},
		Override{Key: "openai.max_retries", Value: "0", Origin: "env RETRIES"},
	)
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != "127.0.0.1:9" || c.Runs.LeaseTTL != 20*time.Second || c.OpenAI.MaxRetries == nil || *c.OpenAI.MaxRetries != 0 {
		t.Fatalf("config %+v", c)
	}
	// A bad override is placed at its origin, not at the file's line.
	_, err = Load("c.yaml", []byte("addr: 127.0.0.1:1\n"),
		Override{Key: "addr", Value: "0.0.0.0:8080", Origin: "flag --addr"},
		Override{Key: "runs.lease_ttl", Value: "soon", Origin: "env LEASE"},
		Override{Key: "runs.nope", Value: "1", Origin: "env NOPE"},
		Override{Key: "runs.max_queued", Value: "[1", Origin: "env QUEUED"},
	)
	want := []string{
		`flag --addr: addr: "0.0.0.0:8080" is not a loopback address`,
		`env LEASE: runs.lease_ttl: "soon" is not a duration`,
		`env NOPE: runs.nope: no such setting`,
		`env QUEUED: runs.max_queued: "[1" is not a single value`,
	}
	var ps Problems
	if !errors.As(err, &ps) || len(ps) != len(want) {
		t.Fatalf("error:\n%v\nwant %d problems", err, len(want))
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error:\n%v\nwant a line %q", err, w)
		}
	}
}

// TestDecodeYAMLFeatures: anchors, aliases, merge keys, tags, block text
// and empty values decode as the YAML library decodes them.
func TestDecodeYAMLFeatures(t *testing.T) {
	t.Parallel()
	c, err := Decode([]byte(`
model: &m llama3
runs: &runs
  max_concurrent: 4
  tool_timeout: 5s
http: ~
sim:
openai:
  max_retries: 0
  base_url: !!str http://127.0.0.1:1/v1
agents:
  - &base
    name: a
    model: *m
    tools: [current_time]
    instructions: |
      Hello
      {{.name}}
  - <<: *base
    name: b
    max_turns: 2
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Model != "llama3" || c.Runs.MaxConcurrent != 4 || c.Runs.ToolTimeout != 5*time.Second || !reflect.DeepEqual(c.HTTP, HTTP{}) || c.Sim != (Sim{}) {
		t.Fatalf("config %+v", c)
	}
	if c.OpenAI.MaxRetries == nil || *c.OpenAI.MaxRetries != 0 || c.OpenAI.BaseURL != "http://127.0.0.1:1/v1" {
		t.Fatalf("openai %+v", c.OpenAI)
	}
	if len(c.Agents) != 2 {
		t.Fatalf("agents %+v", c.Agents)
	}
	a, b := c.Agents[0], c.Agents[1]
	if a.Name != "a" || a.Model != "llama3" || a.Instructions != "Hello\n{{.name}}\n" || a.Tools[0] != "current_time" {
		t.Fatalf("agent a %+v", a)
	}
	if b.Name != "b" || b.Model != "llama3" || b.MaxTurns != 2 || b.Instructions != a.Instructions {
		t.Fatalf("agent b (merged from a) %+v", b)
	}
	if err := c.WithDefaults().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestProblemsError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		p    Problem
		want string
	}{
		{Problem{Source: "a.yaml", Line: 4, Col: 3, Path: "runs.tool_timeout", Message: "bad"}, "a.yaml:4:3: runs.tool_timeout: bad"},
		{Problem{Source: "a.yaml", Line: 4, Path: "x", Message: "bad"}, "a.yaml:4: x: bad"},
		{Problem{Line: 4, Col: 1, Path: "x", Message: "bad"}, "line 4:1: x: bad"},
		{Problem{Source: "flag --addr", Path: "addr", Message: "bad"}, "flag --addr: addr: bad"},
		{Problem{Path: "addr", Message: "bad"}, "addr: bad"},
		{Problem{Source: "a.yaml", Line: 1, Col: 7, Message: "YAML syntax: x"}, "a.yaml:1:7: YAML syntax: x"},
	}
	for _, tt := range tests {
		if got := tt.p.String(); got != tt.want {
			t.Errorf("%+v: %q, want %q", tt.p, got, tt.want)
		}
	}
	ps := Problems{{Path: "none", Message: "m"}, {Line: 9, Path: "b", Message: "m"}, {Line: 2, Col: 5, Path: "a2", Message: "m"}, {Line: 2, Col: 1, Path: "a1", Message: "m"}}
	if got := ps.err().Error(); got != "line 2:1: a1: m\nline 2:5: a2: m\nline 9: b: m\nnone: m" {
		t.Fatalf("sorted: %q", got)
	}
	if Problems(nil).err() != nil {
		t.Fatal("no problems must be a nil error")
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"public addr without auth", func(c *Config) { c.Addr = "0.0.0.0:8080" }, "not a loopback address"},
		{"public profiler", func(c *Config) { c.DebugAddr = "0.0.0.0:6060" }, `debug_addr: "0.0.0.0:6060" is not a loopback address`},
		{"bad profiler address", func(c *Config) { c.DebugAddr = "6060" }, `debug_addr: "6060" is not a host:port address`},
		{"bad addr", func(c *Config) { c.Addr = "8080" }, "addr"},
		{"short key", func(c *Config) { c.Auth.Keys = []APIKey{{Key: "short", User: "u"}} }, "16 characters"},
		{"keyless user", func(c *Config) { c.Auth.Keys = []APIKey{{Key: strings.Repeat("k", 20)}} }, "auth.keys[0].user: empty"},
		{"unknown default agent", func(c *Config) { c.DefaultAgent = "nobody" }, `default_agent: "nobody" is not among the agents (assistant)`},
		{"unknown tool", func(c *Config) { c.Agents[0].Tools = []string{"due_dat"} }, `agents[0].tools[0]: unknown tool "due_dat"; did you mean due_date?`},
		{"negative size", func(c *Config) { c.EventLog.MaxRunBytes = -1 }, "event_log.max_run_bytes: -1 must not be negative"},
		{"negative tokens", func(c *Config) { c.Sim.Tokens = -1 }, "sim.tokens: -1 must not be negative"},
		{"bad template", func(c *Config) { c.Agents[0].Instructions = "{{" }, "agents[0].instructions: not a valid Go template"},
		{"unnamed agent", func(c *Config) { c.Agents = append(c.Agents, agentstream.Agent{}) }, "agents[1].name: empty"},
		{"duplicate agent", func(c *Config) { c.Agents = append(c.Agents, c.Agents[0]) }, "declared twice"},
		{"negative duration", func(c *Config) { c.HTTP.Heartbeat = -time.Second }, "http.heartbeat"},
		{"bad disconnect policy", func(c *Config) { c.Runs.OnDisconnect = "abandon" }, "runs.on_disconnect"},
		{"negative retries", func(c *Config) { n := -1; c.OpenAI.MaxRetries = &n }, "max_retries"},
		{"redis prefix with a brace", func(c *Config) { c.EventLog.RedisPrefix = "a{b}:" }, "event_log.redis_prefix"},
		{"negative max_parallel_tools", func(c *Config) { c.Runs.MaxParallelTools = -1 }, "runs.max_parallel_tools"},
		{"handoffs, not supported yet", func(c *Config) {
			c.Agents = append(c.Agents, agentstream.Agent{Name: "h", Handoffs: []string{"billing"}})
		}, "handoffs: handing a run to another agent is not supported yet"},
		{"require_approval, not supported yet", func(c *Config) {
			c.Agents = append(c.Agents, agentstream.Agent{Name: "h", RequireApproval: []string{"current_time"}})
		}, "require_approval: approving tool calls is not supported yet"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Config{}.WithDefaults()
			tt.mod(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
	// A public address is fine once keys are configured.
	c := Config{Addr: "0.0.0.0:8080", Auth: Auth{Keys: []APIKey{{Key: strings.Repeat("k", 20), User: "ann"}}}}.WithDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

// TestProblemsHideSecrets: a secret written where the config wants
// something else (a key for the list of keys, a token for the header
// mapping) is not quoted by its problem, which still names the setting;
// values of other settings are quoted as before.
func TestProblemsHideSecrets(t *testing.T) {
	t.Parallel()
	file := `auth:
  keys: "key-S3CRET-0123456789"
  run_tokens: {secret: [a, "rt-S3CRET-0123456789"]}
  service_keys:
    - "svc-S3CRET-0123456789"
    - {key: {k: "svc2-S3CRET-0123456789"}, name: x}
  jwt: {secret: true}
openai: {api_key: [x, "sk-S3CRET-123456"]}
models:
  - "model-S3CRET-0123456789"
tools:
  - name: t
    http: {url: "http://127.0.0.1:1/", headers: "hdr-S3CRET-0123456789"}
mcp_servers:
  - {name: m, command: x, env: "env-S3CRET-0123456789"}
agents:
  - {name: a, tools: current_time}
`
	_, err := Load("c.yaml", []byte(file))
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("error %v, want Problems", err)
	}
	if strings.Contains(err.Error(), "S3CRET") {
		t.Errorf("a problem quotes a secret:\n%v", err)
	}
	for _, want := range []string{
		"c.yaml:2:9: auth.keys: want a list (lines starting with -), not a single value (not shown: it may be a secret)",
		"auth.run_tokens.secret: want a single value, not a list",
		"auth.service_keys[0]: want a mapping (key: value lines), not a single value (not shown",
		"auth.service_keys[1].key: want a single value, not a mapping",
		"openai.api_key: want a single value, not a list",
		"models[0]: want a mapping (key: value lines), not a single value (not shown",
		"tools[0].http.headers: want a mapping (name: value lines), not a single value (not shown",
		"mcp_servers[0].env: want a mapping (name: value lines), not a single value (not shown",
		`agents[0].tools: want a list, e.g. [current_time], not "current_time"`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the problems lack %q:\n%v", want, err)
		}
	}
}
