//go:build unix

package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentstream/agentstream/internal/jwtest"
	"github.com/agentstream/agentstream/sim"
)

// TestProcessSecretsNeverPrinted runs the real binary at --log-level
// debug with every kind of secret given through the environment (an API
// key, a JWT secret, a service key, a run-token secret, OPENAI_API_KEY,
// an HTTP tool's header), through bad credentials, a run whose tool fails
// echoing its header, a run token, and a graceful stop: everything the
// process writes on stdout and stderr, and every answer, holds none of
// them, raw, JSON-escaped or base64; the upstream key and the tool's
// header did reach their servers.
func TestProcessSecretsNeverPrinted(t *testing.T) {
	t.Parallel()
	const (
		apiKey      = "key-P1SECRET-0123456789"
		jwtSecret   = "jwt-P1SECRET-0123456789abcdef0123456789"
		serviceKey  = "svc-P1SECRET-0123456789"
		rtSecret    = "rt-P1SECRET-0123456789abcdef0123456789ab"
		upstreamKey = "sk-P1SECRET-0123456789"
		toolSecret  = "tool-P1SECRET-0123456789"
	)
	token := jwtest.HS256(t, jwtSecret, jwtest.Claims("carol", "", ""))
	var mu sync.Mutex
	var toolGot []string
	shop := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		toolGot = append(toolGot, r.Header.Get("X-Shop-Key"))
		mu.Unlock()
		http.Error(w, "failed for "+r.Header.Get("X-Shop-Key"), http.StatusBadGateway)
	}))
	t.Cleanup(shop.Close)
	model := startSim(t, func(r *sim.Request) sim.Behavior {
		if r.LastMessage().Role == "tool" {
			return sim.Behavior{Text: "done"}
		}
		return sim.Behavior{ToolCalls: []sim.ToolCallSpec{{Name: "lookup", Arguments: `{"id": "1"}`}}}
	})
	dir := t.TempDir()
	cfg := writeConfig(t, dir, `auth:
  keys: [{key: "${T_API_KEY}", user: alice}]
  jwt: {secret: "${T_JWT_SECRET}"}
  service_keys: [{key: "${T_SERVICE_KEY}", name: backend}]
  run_tokens: {secret: "${T_RT_SECRET}"}
tools:
  - name: lookup
    http: {url: "`+shop.URL+`/lookup", headers: {X-Shop-Key: "${T_TOOL_SECRET}"}}
agents:
  - {name: assistant, instructions: "Help.", tools: [lookup]}
`)
	p := startServeEnv(t, cfg, filepath.Join(dir, "a.db"), model.URL(), []string{
		"T_API_KEY=" + apiKey, "T_JWT_SECRET=" + jwtSecret, "T_SERVICE_KEY=" + serviceKey, "T_RT_SECRET=" + rtSecret,
		"T_TOOL_SECRET=" + toolSecret, "OPENAI_API_KEY=" + upstreamKey,
	}, "--log-level", "debug")

	var answers strings.Builder
	call := func(method, path, body string, header map[string]string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, p.url+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := p.stream.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		b, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&answers, "%s -> %s\n", resp.Status, b)
		_ = resp.Header.Write(&answers)
		return resp.StatusCode, string(b)
	}
	bearer := func(k string) map[string]string { return map[string]string{"Authorization": "Bearer " + k} }
	for _, h := range []map[string]string{nil, bearer(apiKey + "x"), bearer(token + "x"), bearer(serviceKey)} {
		if st, b := call("GET", "/v1/agents", "", h); st != http.StatusUnauthorized {
			t.Errorf("%v: %d %s, want 401", h, st, b)
		}
	}
	st, b := call("POST", "/v1/chat", `{"query": "find order 1"}`, bearer(token))
	if st != http.StatusOK || !strings.Contains(b, "done") {
		t.Fatalf("the run: %d %s", st, b)
	}
	var runs struct{ Data []struct{ ID string } }
	_, lb := call("GET", "/v1/threads", "", bearer(token))
	var threads struct{ Data []struct{ ID string } }
	if json.Unmarshal([]byte(lb), &threads) != nil || len(threads.Data) != 1 {
		t.Fatalf("carol's threads: %s", lb)
	}
	_, rb := call("GET", "/v1/threads/"+threads.Data[0].ID+"/runs", "", bearer(token))
	if json.Unmarshal([]byte(rb), &runs) != nil || len(runs.Data) != 1 {
		t.Fatalf("carol's runs: %s", rb)
	}
	runID := runs.Data[0].ID
	req, _ := http.NewRequest("POST", p.url+"/v1/runs/"+runID+"/token", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := p.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var rt struct{ Token string }
	if err := json.NewDecoder(resp.Body).Decode(&rt); err != nil || rt.Token == "" {
		t.Fatalf("a run token: %d %v", resp.StatusCode, err)
	}
	_ = resp.Body.Close()
	if st, b := call("GET", "/v1/runs/"+runID+"/events?token="+url.QueryEscape(rt.Token), "", nil); st != http.StatusOK {
		t.Fatalf("the events with the token: %d %s", st, b)
	}
	call("GET", "/v1/runs/"+runID+"/events?token="+url.QueryEscape(rt.Token+"A"), "", nil)
	call("POST", "/v1/chat", `{"query": "again"}`, map[string]string{"Authorization": "Bearer " + serviceKey, "X-Agentstream-User": "bob"})
	p.stopGracefully(30 * time.Second)

	sawUpstream := false
	for _, r := range model.Server().Requests() {
		sawUpstream = sawUpstream || r.Header.Get("Authorization") == "Bearer "+upstreamKey
	}
	mu.Lock()
	gotTool := strings.Join(toolGot, ",")
	mu.Unlock()
	if !sawUpstream || !strings.Contains(gotTool, toolSecret) {
		t.Fatalf("a secret did not reach its server: the model %v, the tool %q", sawUpstream, gotTool)
	}
	output := p.log.String()
	for what, text := range map[string]string{"the process's output": output, "the answers": answers.String()} {
		for name, s := range map[string]string{"the API key": apiKey, "the JWT secret": jwtSecret, "the JWT": token,
			"the JWT's signature": token[strings.LastIndexByte(token, '.')+1:], "the service key": serviceKey,
			"the run-token secret": rtSecret, "the run token": rt.Token, "the upstream key": upstreamKey, "the tool's header": toolSecret} {
			j, _ := json.Marshal(s)
			forms := []string{s, string(j[1 : len(j)-1])}
			for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
				e := strings.TrimRight(enc.EncodeToString([]byte(s)), "=")
				forms = append(forms, e[:len(e)-1])
			}
			for _, f := range forms {
				if i := strings.Index(text, f); i >= 0 {
					t.Errorf("%s hold %s at:\n%s", what, name, text[max(0, i-200):min(len(text), i+len(f)+100)])
				}
			}
		}
	}
	if !strings.Contains(output, "tool=lookup") {
		t.Errorf("the tool's failure was not logged:\n%s", output)
	}
}
