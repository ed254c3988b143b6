package config

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestModelsDecodeAndDefaults: the models: section is read with every
// key, agents pick an endpoint, and unset options get the openai: block's
// defaults without touching the caller's Config.
func TestModelsDecodeAndDefaults(t *testing.T) {
	t.Parallel()
	c, err := Load("c.yaml", []byte(`models:
  - name: local
    base_url: http://127.0.0.1:11434/v1
  - name: openai
    base_url: https://api.openai.com/v1
    api_key: sk-test
    max_retries: 0
    idle_timeout: 90s
    h2c: true
agents:
  - name: helper
    endpoint: local
    model: llama3.1
  - name: writer
    endpoint: openai
    model: gpt-4o
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Models) != 2 || c.Models[0].MaxRetries != nil || c.Models[0].IdleTimeout != 0 {
		t.Fatalf("decoded %+v: want two endpoints, the first without options", c.Models)
	}
	d := c.WithDefaults()
	local, ok := d.Endpoint("local")
	if !ok || local.BaseURL != "http://127.0.0.1:11434/v1" || local.APIKey != "" || *local.MaxRetries != 2 || local.IdleTimeout != 60*time.Second || local.H2C {
		t.Errorf("local with defaults: %+v", local)
	}
	oa, ok := d.Endpoint("openai")
	if !ok || oa.APIKey != "sk-test" || *oa.MaxRetries != 0 || oa.IdleTimeout != 90*time.Second || !oa.H2C {
		t.Errorf("openai: %+v", oa)
	}
	if _, ok := d.Endpoint("nope"); ok {
		t.Error("an unknown endpoint was found")
	}
	if c.Models[0].MaxRetries != nil || c.Models[0].IdleTimeout != 0 {
		t.Errorf("WithDefaults changed the caller's endpoints: %+v", c.Models[0])
	}
	if a := d.Agents[len(d.Agents)-1]; a.Endpoint != "openai" || a.Model != "gpt-4o" {
		t.Errorf("agent %+v", a)
	}
}

// TestModelsProblems: every mistake in models: and in the agents'
// endpoint: keys is reported at its line, at once.
func TestModelsProblems(t *testing.T) {
	t.Parallel()
	file := `models:
  - name: local
    base_url: http://127.0.0.1:11434/v1
  - name: local
    base_url: https://api.openai.com/v1
  - name: remote
  - name: ""
    base_url: ftp://user:secret@host/v1
    max_retries: -1
    idle_timeout: -5s
  - name: bad url
    base_url: "http://[::1"
agents:
  - name: helper
    endpoint: locla
    model: llama3.1
  - name: writer
    endpoint: openai
  - name: plain
    model: gpt-4o-mini
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
		{4, "models[1].name", `model endpoint "local" is declared twice (also models[0])`},
		{6, "models[2].base_url", "empty: every model endpoint needs the URL of its API"},
		{7, "models[3].name", "empty: every model endpoint needs a name"},
		{8, "models[3].base_url", `"ftp://host/v1 (credentials hidden)" is not an http:// or https:// URL`},
		{9, "models[3].max_retries", "-1 must not be negative"},
		{10, "models[3].idle_timeout", "-5s must not be negative"},
		{11, "models[4].name", `"bad url" may not contain spaces or slashes`},
		{12, "models[4].base_url", "not a URL"},
		{15, "agents[0].endpoint", `unknown model endpoint "locla"; did you mean local?`},
		// A key the file lacks is placed at its agent.
		{17, "agents[1].model", "empty: an agent with an endpoint names its model"},
		{18, "agents[1].endpoint", `unknown model endpoint "openai"; the model endpoints are local, remote`},
	}
	if len(ps) != len(want) {
		t.Fatalf("%d problems, want %d:\n%v", len(ps), len(want), err)
	}
	for i, w := range want {
		if p := ps[i]; p.Source != "c.yaml" || p.Line != w.line || p.Path != w.path || !strings.Contains(p.Message, w.text) {
			t.Errorf("problem %d: %+v, want line %d, %s: %s", i, p, w.line, w.path, w.text)
		}
	}
	if strings.Contains(err.Error(), "secret") {
		t.Errorf("a problem shows the base URL's password:\n%v", err)
	}
}

// TestModelsUnknownEndpointWithoutModels: an agent naming an endpoint in
// a config without models: is told so.
func TestModelsUnknownEndpointWithoutModels(t *testing.T) {
	t.Parallel()
	_, err := Load("c.yaml", []byte("agents:\n  - name: helper\n    model: llama3.1\n    endpoint: local\n"))
	if err == nil || err.Error() != `c.yaml:4:5: agents[0].endpoint: unknown model endpoint "local"; no model endpoints are declared: add it under models:, or remove endpoint: to use the openai: block` {
		t.Fatalf("error %v", err)
	}
}

func TestShowURL(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ in, want string }{
		{"http://127.0.0.1:11434/v1", "http://127.0.0.1:11434/v1"},
		{"https://user:pw@api.example/v1", "https://api.example/v1 (credentials hidden)"},
		{"https://api.example/v1?api-key=k", "https://api.example/v1 (credentials hidden)"},
		{"http://[::1", "(an unparsable URL)"},
	} {
		if got := ShowURL(tt.in); got != tt.want {
			t.Errorf("ShowURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestModelsExpand: an endpoint's base_url and api_key may reference
// environment variables; the key is a secret whatever way it was written,
// and an unset variable is a problem at its line.
func TestModelsExpand(t *testing.T) {
	t.Parallel()
	file := []byte(`models:
  - name: local
    base_url: http://${OLLAMA_HOST}/v1
    api_key: ${OLLAMA_KEY}
  - name: cloud
    base_url: https://api.openai.com/v1
    api_key: sk-written-here
`)
	env := map[string]string{"OLLAMA_HOST": "127.0.0.1:11434", "OLLAMA_KEY": "ollama-secret"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	c, err := LoadEnv("c.yaml", file, lookup)
	if err != nil {
		t.Fatal(err)
	}
	if m, _ := c.Endpoint("local"); m.BaseURL != "http://127.0.0.1:11434/v1" || m.APIKey != "ollama-secret" {
		t.Errorf("expanded endpoint %+v", m)
	}
	secrets := c.Secrets()
	for _, s := range []string{"ollama-secret", "sk-written-here"} {
		if !slices.Contains(secrets, s) {
			t.Errorf("Secrets() = %q, lacks the key %q", secrets, s)
		}
	}
	if slices.Contains(secrets, "127.0.0.1:11434") {
		t.Errorf("Secrets() = %q: a base URL's variable is not a secret", secrets)
	}

	delete(env, "OLLAMA_KEY")
	_, err = LoadEnv("c.yaml", file, lookup)
	if err == nil || !strings.HasPrefix(err.Error(), "c.yaml:4:5: models[0].api_key: ${OLLAMA_KEY} is not set in the environment") {
		t.Fatalf("an unset variable: %v", err)
	}
}
