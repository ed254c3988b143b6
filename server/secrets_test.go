package server_test

import (
	"bytes"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/config"
	"github.com/agentstream/agentstream/internal/jwtest"
	"github.com/agentstream/agentstream/mcp/mcptest"
	"github.com/agentstream/agentstream/sim"
)

// TestSecretsNeverLeak sets every kind of secret at once (an API key, a
// JWT secret and a JWT signed with it, a service key, a run-token secret
// and an issued run token, the upstream models' API keys, an HTTP tool's
// header, keys stored with agentstream keys, one of them revoked) and
// runs through every endpoint, failures included: bad credentials, a
// tool error and an upstream error whose servers echo the credentials
// they got. Everything the server writes (its logs at debug, every
// response's status line, headers and body, the whole SQLite store)
// holds none of the secrets, raw, JSON-escaped or base64-encoded. The
// secrets did reach where they belong (the model, the tool's server), so
// the test is not vacuous.
func TestSecretsNeverLeak(t *testing.T) {
	t.Parallel()
	const (
		apiKey       = "key-alice-S3CRET-a1a1a1a1a1"
		wrongKey     = "key-alice-S3CRET-a1a1a1a1a2" // a guess, close to the key
		jwtSecret    = "jwt-hs256-S3CRET-b2b2b2b2b2b2b2b2b2b2b2b2"
		serviceKey   = "svc-S3CRET-c3c3c3c3c3c3c3"
		runTokSecret = "rt-S3CRET-d4d4d4d4d4d4d4d4d4d4d4d4d4d4"
		upstreamKey  = "sk-S3CRET-e5e5e5e5e5e5"
		echoModelKey = "sk-S3CRET-f6f6f6f6f6f6"
		toolSecret   = "tool-S3CRET-g7g7g7g7g7g7"
		mcpHeader    = "mcp-hdr-S3CRET-h8h8h8h8h8"
		mcpEnv       = "mcp-env-S3CRET-i9i9i9i9i9"
	)
	token := jwtest.HS256(t, jwtSecret, jwtest.Claims("carol", "", ""))
	badJWT := jwtest.HS256(t, "another-secret-entirely-0123456789abcdef", jwtest.Claims("carol", "", ""))

	// The tool's server and an upstream that refuses, each echoing the
	// credential it got, as careless servers do.
	var mu sync.Mutex
	toolGot, echoGot := []string{}, []string{}
	shop := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		toolGot = append(toolGot, r.Header.Get("X-Shop-Key"))
		mu.Unlock()
		if r.URL.Path == "/broken" {
			http.Error(w, "failed for key "+r.Header.Get("X-Shop-Key"), http.StatusInternalServerError)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"order": "shipped", "key_seen": r.Header.Get("X-Shop-Key")})
	}))
	t.Cleanup(shop.Close)
	refusing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		echoGot = append(echoGot, r.Header.Get("Authorization"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Echo", r.Header.Get("Authorization"))
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = fmt.Fprintf(w, `{"error": {"message": "Incorrect API key provided: %s", "type": "invalid_request_error", "code": "invalid_api_key"}}`,
			strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
	}))
	t.Cleanup(refusing.Close)
	// An MCP server over HTTP that shows the X- headers it got (whoami),
	// and one as a child process given a secret in its environment.
	remote := mcptest.StartHTTP(t)
	child := mcptest.Build(t)

	file := `auth:
  keys: [{key: "${API_KEY}", user: alice}]
  jwt: {secret: "${JWT_SECRET}"}
  service_keys: [{key: "${SERVICE_KEY}", name: backend}]
  run_tokens: {secret: "${RUN_TOKEN_SECRET}"}
models:
  - {name: refusing, base_url: "${REFUSING}", api_key: "${ECHO_MODEL_KEY}", max_retries: 0}
mcp_servers:
  - {name: remote, url: "${MCP_URL}", headers: {X-Mcp-Key: "${MCP_HEADER}"}, prefix: remote_, tools: [whoami]}
  - {name: child, command: "` + child + `", env: {MCPTEST_STDERR: "my token is ${MCP_ENV}"}, tools: [echo]}
tools:
  - name: lookup_order
    description: Look up an order
    http: {url: "${SHOP}/orders", headers: {X-Shop-Key: "${TOOL_SECRET}"}}
  - name: broken
    http: {url: "${SHOP}/broken", headers: {X-Shop-Key: "${TOOL_SECRET}"}}
agents:
  - {name: shopper, instructions: "You help.", tools: [lookup_order, broken], mcp_servers: [remote, child]}
  - {name: failing, instructions: "You fail.", endpoint: refusing, model: gpt-x}
`
	loaded, err := config.LoadEnv("secrets.yaml", []byte(file), func(name string) (string, bool) {
		v, ok := map[string]string{
			"API_KEY": apiKey, "JWT_SECRET": jwtSecret, "SERVICE_KEY": serviceKey, "RUN_TOKEN_SECRET": runTokSecret,
			"ECHO_MODEL_KEY": echoModelKey, "TOOL_SECRET": toolSecret, "SHOP": shop.URL, "REFUSING": refusing.URL,
			"MCP_URL": remote.URL, "MCP_HEADER": mcpHeader, "MCP_ENV": mcpEnv,
		}[name]
		return v, ok
	})
	if err != nil {
		t.Fatalf("the config: %v", err)
	}
	decide := func(r *sim.Request) sim.Behavior {
		if r.LastMessage().Role == "tool" {
			return sim.Behavior{}
		}
		return sim.Behavior{ToolCalls: []sim.ToolCallSpec{
			{Name: "lookup_order", Arguments: `{"order_id": "A-1"}`}, {Name: "broken", Arguments: `{}`},
			{Name: "remote_whoami", Arguments: `{}`}, {Name: "echo", Arguments: `{"text": "hello"}`},
		}}
	}
	logs := &lockedBuffer{}
	var dbPath string
	e := startLogged(t, sim.Options{Tokens: 5, Decide: decide}, func(c *config.Config) {
		l := loaded
		l.Addr, l.DatabaseURL, l.OpenAI = c.Addr, c.DatabaseURL, c.OpenAI
		l.OpenAI.APIKey = upstreamKey
		dbPath = c.DatabaseURL
		l.Agents = append(c.Agents, loaded.Agents...)
		l.DefaultAgent = "shopper"
		*c = l
	}, slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	// Every answer, as sent: status line, headers and body.
	var answers bytes.Buffer
	call := func(method, path, body string, header map[string]string) (int, []byte) {
		t.Helper()
		resp := e.requestCtx(streamCtx(t), method, path, body, header)
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		// The path without its query: the test's own words, not the
		// server's (a run token rides in ?token=).
		fmt.Fprintf(&answers, "%s %s -> %s\n", method, strings.SplitN(path, "?", 2)[0], resp.Status)
		_ = resp.Header.Write(&answers)
		answers.Write(b)
		answers.WriteString("\n\n")
		return resp.StatusCode, b
	}
	bearer := func(k string) map[string]string { return map[string]string{"Authorization": "Bearer " + k} }
	alice, carol := bearer(apiKey), bearer(token)
	// Keys stored with agentstream keys: one in use, one revoked.
	ks := openStore(t, dbPath).(agentstream.KeyStore)
	storedKey, stored := agentstream.NewAPIKey("dora", "laptop", time.Now())
	revokedKey, revoked := agentstream.NewAPIKey("dora", "old", time.Now())
	for _, k := range []agentstream.APIKey{stored, revoked} {
		if err := ks.CreateKey(t.Context(), k); err != nil {
			t.Fatalf("storing a key: %v", err)
		}
	}
	if _, err := ks.RevokeKey(t.Context(), revoked.ID, time.Now()); err != nil {
		t.Fatalf("revoking a key: %v", err)
	}
	dora := bearer(storedKey)
	asBob := map[string]string{"Authorization": "Bearer " + serviceKey, "X-Agentstream-User": "bob"}

	// Bad credentials of every kind: 401, saying why without the secret.
	for _, h := range []map[string]string{
		nil, bearer(wrongKey), bearer(badJWT), bearer(token + "x"), bearer(serviceKey), bearer(revokedKey), bearer(storedKey + "x"),
		{"Authorization": "Bearer " + apiKey, "X-Agentstream-User": "bob"},
		{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("alice:"+apiKey))},
	} {
		if st, b := call("GET", "/v1/agents", "", h); st != http.StatusUnauthorized {
			t.Errorf("GET /v1/agents with %v: %d %s, want 401", h, st, b)
		}
	}

	// A run with both tools (one fails), for each identity.
	var threadID, runID string
	for _, who := range []map[string]string{alice, dora, carol, asBob} {
		st, b := call("POST", "/v1/threads", `{"title": "orders"}`, who)
		var th struct{ ID string }
		if st != http.StatusCreated || json.Unmarshal(b, &th) != nil {
			t.Fatalf("creating a thread: %d %s", st, b)
		}
		st, b = call("POST", "/v1/threads/"+th.ID+"/runs", `{"input": "where is my order?"}`, who)
		if st != http.StatusOK || !bytes.Contains(b, []byte("run.completed")) || !bytes.Contains(b, []byte("HTTP 500")) {
			t.Fatalf("the run: %d %s", st, b)
		}
		threadID = th.ID
	}
	// Alice's listings and reads (threadID is Bob's: hers come first).
	st, b := call("GET", "/v1/threads", "", asBob)
	if st != http.StatusOK {
		t.Fatalf("GET /v1/threads: %d %s", st, b)
	}
	st, b = call("GET", "/v1/threads/"+threadID+"/runs", "", asBob)
	var runs struct{ Data []struct{ ID string } }
	if st != http.StatusOK || json.Unmarshal(b, &runs) != nil || len(runs.Data) == 0 {
		t.Fatalf("GET runs: %d %s", st, b)
	}
	runID = runs.Data[0].ID
	for _, p := range []string{"/v1/threads/" + threadID, "/v1/threads/" + threadID + "/messages", "/v1/runs/" + runID,
		"/v1/runs/" + runID + "/events", "/v1/runs/" + runID + "/events?format=openai", "/v1/agents", "/v1/models", "/v1/models/shopper",
		"/v1/runs/run_none", "/v1/threads/thr_none"} {
		call("GET", p, "", asBob)
	}
	call("POST", "/v1/runs/"+runID+"/cancel", "", asBob) // 409: it has ended
	call("GET", "/v1/runs/"+runID, "", alice)            // 404: Bob's
	// A run token: its answer is the one place it may be; with it, the
	// events read without a key; a tampered one is a 401.
	st, b = call("POST", "/v1/runs/"+runID+"/token", "", asBob)
	var rt struct{ Token string }
	if st != http.StatusOK || json.Unmarshal(b, &rt) != nil || !strings.HasPrefix(rt.Token, "rt1.") {
		t.Fatalf("a run token: %d %s", st, b)
	}
	answers.Truncate(answers.Len() - len(b) - 2) // the token's own answer
	answers.WriteString("(the run token's answer)\n\n")
	if st, b := call("GET", "/v1/runs/"+runID+"/events?token="+url.QueryEscape(rt.Token), "", nil); st != http.StatusOK {
		t.Fatalf("the events with the run token: %d %s", st, b)
	}
	call("GET", "/v1/runs/"+runID+"/events?token="+url.QueryEscape(rt.Token+"A"), "", nil)
	call("GET", "/v1/runs/run_other/events?token="+url.QueryEscape(rt.Token), "", nil)

	// The other wire formats' endpoints, and the agent whose upstream
	// refuses its key (echoing it).
	call("POST", "/v1/chat", `{"query": "hi", "thread_id": "chat-1"}`, alice)
	call("POST", "/v1/chat/completions", `{"model": "shopper", "messages": [{"role": "user", "content": "hi"}]}`, alice)
	call("POST", "/api/chat", `{"id": "ui-1", "messages": [{"role": "user", "parts": [{"type": "text", "text": "hi"}]}]}`, carol)
	call("POST", "/ag-ui/shopper", `{"threadId": "ag-1", "runId": "r1", "messages": [{"role": "user", "content": "hi"}]}`, carol)
	st, b = call("POST", "/v1/chat", `{"query": "hi", "agent": "failing"}`, alice)
	if st != http.StatusOK || !bytes.Contains(b, []byte("upstream")) {
		t.Fatalf("the failing agent's run: %d %s", st, b)
	}
	st, b = call("POST", "/v1/chat/completions", `{"model": "failing", "messages": [{"role": "user", "content": "hi"}]}`, alice)
	if st < 400 {
		t.Fatalf("the failing agent's completion: %d %s", st, b)
	}
	call("GET", "/healthz", "", nil)
	call("GET", "/readyz", "", nil)

	// The secrets went where they belong.
	sawUpstream := false
	for _, r := range e.sim.Requests() {
		if r.Header.Get("Authorization") == "Bearer "+upstreamKey {
			sawUpstream = true
		}
	}
	mu.Lock()
	gotTool, gotEcho := strings.Join(toolGot, ","), strings.Join(echoGot, ",")
	mu.Unlock()
	if !sawUpstream || !strings.Contains(gotTool, toolSecret) || !strings.Contains(gotEcho, "Bearer "+echoModelKey) {
		t.Fatalf("a secret did not reach its server: the model %v, the tool %q, the refusing upstream %q", sawUpstream, gotTool, gotEcho)
	}

	// whoami answered what it got, the MCP header among it (masked).
	if !strings.Contains(answers.String(), `X-Mcp-Key`) {
		t.Errorf("the MCP server's whoami did not run or did not get its header:\n%s", answers.String())
	}

	// The child printed its secret to its stderr, which is logged masked.
	if !strings.Contains(logs.String(), `line="my token is [redacted]"`) {
		t.Errorf("the MCP child's stderr line with its secret is not in the logs, masked")
	}
	// The model read the tools' results, the secrets masked in them.
	var modelSaw strings.Builder
	for _, r := range e.sim.Requests() {
		for _, m := range r.Messages {
			modelSaw.WriteString(m.Content + "\n")
		}
	}
	for _, want := range []string{`"X-Mcp-Key":"[redacted]"`, "echo: hello", `"key_seen":"[redacted]"`} {
		if !strings.Contains(modelSaw.String(), want) {
			t.Errorf("the model's requests lack %q:\n%s", want, modelSaw.String())
		}
	}

	// The store, every table whole.
	store := dumpSQLite(t, dbPath)

	secrets := map[string]string{
		"the API key": apiKey, "the wrong key": wrongKey, "the JWT secret": jwtSecret, "the JWT": token, "the bad JWT": badJWT,
		"the service key": serviceKey, "the run-token secret": runTokSecret, "the run token": rt.Token,
		"the upstream key": upstreamKey, "the endpoint key": echoModelKey, "the tool secret": toolSecret,
		"the MCP header": mcpHeader, "the MCP child's env": mcpEnv,
		"the stored key": storedKey, "the revoked stored key": revokedKey,
	}
	// The JWT's signature alone is secret too (its claims are the user's).
	secrets["the JWT's signature"] = token[strings.LastIndexByte(token, '.')+1:]
	for what, text := range map[string]string{"the logs": logs.String(), "the answers": answers.String(), "the store": store,
		"the model's requests": modelSaw.String()} {
		if len(text) < 200 {
			t.Fatalf("%s hold almost nothing: %q", what, text)
		}
		for name, s := range secrets {
			for _, form := range secretForms(s) {
				if i := strings.Index(text, form); i >= 0 {
					t.Errorf("%s hold %s (as %q) at:\n%s", what, name, form, text[max(0, i-300):min(len(text), i+len(form)+100)])
				}
			}
		}
	}
	t.Logf("the logs:\n%s", logs.String())
}

// secretForms are the ways a secret could be written out: as itself,
// JSON-escaped, and base64 of every alphabet.
func secretForms(s string) []string {
	j, _ := json.Marshal(s)
	forms := []string{s, string(j[1 : len(j)-1])}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		// Without the padding and the last character, whose bits depend
		// on what follows the secret when it is encoded inside more.
		b := strings.TrimRight(enc.EncodeToString([]byte(s)), "=")
		forms = append(forms, b[:len(b)-1])
	}
	return forms
}

// dumpSQLite returns every row of every table of the SQLite store at
// path, as text.
func dumpSQLite(t *testing.T, path string) string {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = db.Close() }()
	rows, err := db.Query(`SELECT name FROM sqlite_master WHERE type = 'table'`)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, n)
	}
	if err := rows.Close(); err != nil {
		t.Fatal(err)
	}
	sort.Strings(tables)
	var out strings.Builder
	for _, tbl := range tables {
		rows, err := db.Query(`SELECT * FROM "` + tbl + `"`)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		fmt.Fprintf(&out, "== %s %v\n", tbl, cols)
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			for _, v := range vals {
				if b, ok := v.([]byte); ok {
					v = string(b)
				}
				fmt.Fprintf(&out, "%v\t", v)
			}
			out.WriteString("\n")
		}
		if err := rows.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return out.String()
}
