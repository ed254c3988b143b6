package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/config"
	"github.com/agentstream/agentstream/server"
	"github.com/agentstream/agentstream/sim"
)

// lockedBuffer (httptool_test.go) collects the logs.

// startSim starts a fast simulator for the test.
func startSim(t testing.TB) *sim.Running {
	t.Helper()
	s, err := sim.Start("127.0.0.1:0", sim.Options{Pace: -1, TTFT: -1})
	if err != nil {
		t.Fatalf("starting a simulator: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// TestModelEndpoints: two agents, each on its own endpoint (its own
// simulator) with its own model name and key: each endpoint receives every
// model call of its agent's runs (tool turns too) and no other, with that
// model and key; an agent without an endpoint stays on the openai: block.
// GET /v1/agents names each agent's endpoint, never its URL or key, and
// neither do the logs.
func TestModelEndpoints(t *testing.T) {
	t.Parallel()
	local, cloud := startSim(t), startSim(t)
	var logs lockedBuffer
	e := startLogged(t, sim.Options{}, func(c *config.Config) {
		c.Models = []config.ModelEndpoint{
			{Name: "local", BaseURL: local.URL()},
			{Name: "cloud", BaseURL: cloud.URL(), APIKey: "sk-cloud-secret", H2C: true},
		}
		c.Agents = append(c.Agents,
			agentstream.Agent{Name: "on-local", Endpoint: "local", Model: "llama3.1", Tools: []string{"current_time"}, MaxTurns: 3},
			agentstream.Agent{Name: "on-cloud", Endpoint: "cloud", Model: "gpt-4o", Tools: []string{"current_time"}, MaxTurns: 3},
		)
	}, slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	for _, agent := range []string{"on-local", "on-cloud", "tester"} {
		th := e.newThread(`{"agent": "` + agent + `"}`)
		_, evs := e.stream("POST", "/v1/threads/"+th.ID+"/runs", `{"input": "What is the current_time?"}`)
		run := checkNative(t, evs)
		if run.terminal.Type != string(agentstream.EventRunCompleted) || len(run.results) != 1 || run.results[0].IsError {
			t.Fatalf("%s: the run ended %s with results %+v: %v", agent, run.terminal.Type, run.results, evs)
		}
	}

	for _, tt := range []struct {
		name, model, auth string
		srv               *sim.Server
	}{
		{"local", "llama3.1", "", local.Server()},
		{"cloud", "gpt-4o", "Bearer sk-cloud-secret", cloud.Server()},
		{"the openai: block", "gpt-4o-mini", "Bearer sk-test", e.sim}, // the default model
	} {
		reqs := tt.srv.Requests()
		// A tool turn and the answer after it.
		if len(reqs) != 2 {
			t.Errorf("%s received %d model calls, want 2 (its agent's run)", tt.name, len(reqs))
		}
		for i, r := range reqs {
			if r.Model != tt.model || r.Header.Get("Authorization") != tt.auth {
				t.Errorf("%s, call %d: model %q, Authorization %q; want %q, %q", tt.name, i, r.Model, r.Header.Get("Authorization"), tt.model, tt.auth)
			}
		}
	}

	var agents struct {
		Data []map[string]any `json:"data"`
	}
	resp := e.do("GET", "/v1/agents", "")
	body := new(bytes.Buffer)
	if _, err := body.ReadFrom(resp.Body); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(body.Bytes(), &agents); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/agents: %d %s: %v", resp.StatusCode, body, err)
	}
	endpoints := map[string]any{}
	for _, a := range agents.Data {
		endpoints[a["name"].(string)] = a["endpoint"]
	}
	if endpoints["on-local"] != "local" || endpoints["on-cloud"] != "cloud" || endpoints["tester"] != nil {
		t.Errorf("GET /v1/agents endpoints: %v", endpoints)
	}
	for _, secret := range []string{"sk-cloud-secret", local.Addr(), cloud.Addr()} {
		if strings.Contains(body.String(), secret) {
			t.Errorf("GET /v1/agents shows %q: %s", secret, body)
		}
	}
	for _, want := range []string{
		`msg="model endpoint" name=local url=` + local.URL() + ` agents="[on-local (llama3.1)]"`,
		`msg="model endpoint" name=cloud url=` + cloud.URL() + ` agents="[on-cloud (gpt-4o)]"`,
	} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the logs lack %q:\n%s", want, logs.String())
		}
	}
	if strings.Contains(logs.String(), "sk-cloud-secret") {
		t.Errorf("the logs show an endpoint's key:\n%s", logs.String())
	}
}

// TestModelEndpointBesideSimulator: with no openai: block, agents without
// an endpoint get the in-process simulated model while an agent on an
// endpoint calls that endpoint.
func TestModelEndpointBesideSimulator(t *testing.T) {
	t.Parallel()
	local := startSim(t)
	e := start(t, sim.Options{}, func(c *config.Config) {
		c.OpenAI = config.OpenAI{}
		c.Models = []config.ModelEndpoint{{Name: "local", BaseURL: local.URL()}}
		c.Agents = append(c.Agents, agentstream.Agent{Name: "on-local", Endpoint: "local", Model: "llama3.1"})
	})
	th := e.newThread(`{"agent": "tester"}`)
	_, evs := e.stream("POST", "/v1/threads/"+th.ID+"/runs", `{"input": "hello"}`)
	if run := checkNative(t, evs); run.terminal.Type != string(agentstream.EventRunCompleted) || !strings.HasPrefix(run.text, "[simulated]") {
		t.Fatalf("the default agent's run: %s %q", run.terminal.Type, run.text)
	}
	if n := len(local.Server().Requests()) + len(e.sim.Requests()); n != 0 {
		t.Fatalf("the agent without an endpoint called a configured simulator %d times, want the in-process one", n)
	}
	th = e.newThread(`{"agent": "on-local"}`)
	_, evs = e.stream("POST", "/v1/threads/"+th.ID+"/runs", `{"input": "hello"}`)
	if run := checkNative(t, evs); run.terminal.Type != string(agentstream.EventRunCompleted) {
		t.Fatalf("the endpoint agent's run: %s", run.terminal.Type)
	}
	if reqs := local.Server().Requests(); len(reqs) != 1 || reqs[0].Model != "llama3.1" {
		t.Fatalf("the endpoint got %d calls (%+v), want 1 for llama3.1", len(reqs), reqs)
	}
}

// TestModelEndpointUnknown: server.New refuses an agent naming an
// endpoint that is not declared, and starts nothing.
func TestModelEndpointUnknown(t *testing.T) {
	t.Parallel()
	cfg := config.Config{
		Addr: "127.0.0.1:0", DatabaseURL: filepath.Join(t.TempDir(), "a.db"),
		Models: []config.ModelEndpoint{{Name: "local", BaseURL: "http://127.0.0.1:9/v1"}},
		Agents: []agentstream.Agent{{Name: "helper", Endpoint: "locl", Model: "llama3.1"}},
	}
	srv, err := server.New(context.Background(), cfg, nil)
	if err == nil {
		_ = srv.Shutdown(context.Background())
		t.Fatal("server.New accepted an unknown endpoint")
	}
	if !strings.Contains(err.Error(), `agents[1].endpoint: unknown model endpoint "locl"; did you mean local?`) {
		t.Fatalf("error %v", err)
	}
}
