package config

import (
	"strings"
	"testing"
	"time"
)

func TestDefaults(t *testing.T) {
	t.Parallel()
	c := Config{}.WithDefaults()
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	if c.Addr != "127.0.0.1:8080" || c.DatabaseURL != "agentstream.db" || c.Model != SimModel || !c.UsesSim() {
		t.Fatalf("defaults: %+v", c)
	}
	if c.HTTP.Heartbeat != 15*time.Second || c.Runs.MaxConcurrent != 256 || *c.OpenAI.MaxRetries != 2 || c.EventLog.RedisPrefix != "agentstream:" {
		t.Fatalf("defaults: %+v", c)
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

func TestDecodeErrors(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, yaml, want string }{
		{"unknown key", "adr: x", "adr"},
		{"bad duration", "http:\n  heartbeat: soon", `invalid duration "soon"`},
		{"wrong type", "runs:\n  max_concurrent: many", "max_concurrent"},
		{"not yaml", "addr: [", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode([]byte(tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one naming %q", err, tt.want)
			}
		})
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
		{"public profiler", func(c *Config) { c.DebugAddr = "0.0.0.0:6060" }, "debug_addr \"0.0.0.0:6060\" is not a loopback address"},
		{"bad profiler address", func(c *Config) { c.DebugAddr = "6060" }, "debug_addr \"6060\""},
		{"bad addr", func(c *Config) { c.Addr = "8080" }, "addr"},
		{"short key", func(c *Config) { c.Auth.Keys = []APIKey{{Key: "short", User: "u"}} }, "16 characters"},
		{"keyless user", func(c *Config) { c.Auth.Keys = []APIKey{{Key: strings.Repeat("k", 20)}} }, "user is empty"},
		{"unknown default agent", func(c *Config) { c.DefaultAgent = "nobody" }, `default_agent "nobody"`},
		{"duplicate agent", func(c *Config) { c.Agents = append(c.Agents, c.Agents[0]) }, "declared twice"},
		{"negative duration", func(c *Config) { c.HTTP.Heartbeat = -time.Second }, "http.heartbeat"},
		{"bad disconnect policy", func(c *Config) { c.Runs.OnDisconnect = "abandon" }, "runs.on_disconnect"},
		{"negative retries", func(c *Config) { n := -1; c.OpenAI.MaxRetries = &n }, "max_retries"},
		{"redis prefix with a brace", func(c *Config) { c.EventLog.RedisPrefix = "a{b}:" }, "event_log.redis_prefix"},
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
