package httpapi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
)

// TestRunTokenVerify: a token opens its own run until it expires; another
// run, a later time, a changed payload or signature, another secret, or
// something that is not a token are each refused with a 401 saying which.
func TestRunTokenVerify(t *testing.T) {
	t.Parallel()
	now := time.Now()
	rt := newRunTokens([]byte("0123456789abcdef0123456789abcdef"), 10*time.Minute)
	tok, exp := rt.issue("u1", "run_a", now)
	if want := now.Add(10 * time.Minute).Truncate(time.Second); !exp.Equal(want) {
		t.Fatalf("expires at %v, want %v", exp, want)
	}
	payload, sig, _ := strings.Cut(strings.TrimPrefix(tok, runTokenPrefix), ".")
	forged, _ := json.Marshal(runTokenClaims{Run: "run_b", User: "u1", Exp: exp.Unix()})
	other := newRunTokens([]byte("another secret, just as long....."), 10*time.Minute)
	otherTok, _ := other.issue("u1", "run_a", now)
	flip := func(s string) string { // one character changed
		b := []byte(s)
		if b[3] == 'A' {
			b[3] = 'B'
		} else {
			b[3] = 'A'
		}
		return string(b)
	}
	for _, tc := range []struct {
		name, token, run string
		at               time.Time
		want             string // in the error; "" for success
	}{
		{"its run", tok, "run_a", now, ""},
		{"just before it expires", tok, "run_a", exp.Add(-time.Millisecond), ""},
		{"another run", tok, "run_b", now, "is for another run"},
		{"expired", tok, "run_a", exp, "has expired"},
		{"long expired", tok, "run_a", now.Add(time.Hour), "has expired"},
		{"payload changed", runTokenPrefix + base64.RawURLEncoding.EncodeToString(forged) + "." + sig, "run_b", now, "is not valid"},
		{"signature changed", runTokenPrefix + payload + "." + flip(sig), "run_a", now, "is not valid"},
		{"signature cut", runTokenPrefix + payload + "." + sig[:10], "run_a", now, "is not valid"},
		{"another secret", otherTok, "run_a", now, "is not valid"},
		{"no signature", runTokenPrefix + payload, "run_a", now, "is not one"},
		{"no prefix", payload + "." + sig, "run_a", now, "is not one"},
		{"empty", "", "run_a", now, "is not one"},
		{"an API key", "key-0123456789abcdef", "run_a", now, "is not one"},
	} {
		id, err := rt.verify(tc.token, tc.run, tc.at)
		if tc.want == "" {
			if err != nil || id != (Identity{UserID: "u1", Via: ViaRunToken, RunID: "run_a"}) {
				t.Errorf("%s: %+v, %v", tc.name, id, err)
			}
			continue
		}
		if agentstream.CodeOf(err) != agentstream.CodeUnauthorized || !strings.Contains(err.Error(), tc.want) || id != (Identity{}) {
			t.Errorf("%s: %+v, %v; want a 401 saying %q", tc.name, id, err, tc.want)
		}
	}
	// Instances sharing the secret verify each other's tokens.
	twin := newRunTokens([]byte("0123456789abcdef0123456789abcdef"), time.Minute)
	if _, err := twin.verify(tok, "run_a", now); err != nil {
		t.Errorf("an instance with the same secret: %v", err)
	}
	// Without a secret each process draws its own.
	a, b := newRunTokens(nil, time.Minute), newRunTokens(nil, time.Minute)
	ta, _ := a.issue("u1", "run_a", now)
	if _, err := a.verify(ta, "run_a", now); err != nil {
		t.Errorf("a random secret's own token: %v", err)
	}
	if _, err := b.verify(ta, "run_a", now); err == nil {
		t.Error("two random secrets verify each other's tokens")
	}
}

// runningFor stores a running run of user with its first events in the
// log, as the instance running it would.
func (f *fixture) runningFor(user string) agentstream.Run {
	f.t.Helper()
	ctx := f.t.Context()
	now := time.Now().UTC()
	th := agentstream.Thread{ID: agentstream.NewID("thr_"), UserID: user, Agent: "assistant", CreatedAt: now, UpdatedAt: now}
	if err := f.store.CreateThread(ctx, th); err != nil {
		f.t.Fatal(err)
	}
	run := agentstream.Run{ID: agentstream.NewID("run_"), ThreadID: th.ID, UserID: user, Agent: "assistant", Status: agentstream.RunQueued, CreatedAt: now}
	in := agentstream.Message{ID: agentstream.NewID("msg_"), ThreadID: th.ID, RunID: run.ID, Role: agentstream.RoleUser,
		Content: "hi", Status: agentstream.MessageComplete, CreatedAt: now}
	if _, err := f.store.CreateRun(ctx, run, in); err != nil {
		f.t.Fatal(err)
	}
	if err := f.store.StartRun(ctx, run.ID, now); err != nil {
		f.t.Fatal(err)
	}
	if _, err := f.log.Append(ctx, run.ID,
		agentstream.NewEvent(agentstream.EventRunCreated, agentstream.RunCreatedData{RunID: run.ID, ThreadID: th.ID}),
		agentstream.NewEvent(agentstream.EventRunStarted, agentstream.RunStartedData{RunID: run.ID}),
	); err != nil {
		f.t.Fatal(err)
	}
	return run
}

// syncBuffer is a log destination written by the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func do(t testing.TB, method, url, key string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	t.Cleanup(func() { _ = resp.Body.Close() })
	return resp
}

// TestRunTokenHTTP: POST /v1/runs/{id}/token gives the run's owner a
// token that opens that run's events as ?token= without a key, and
// nothing else: not another run, not another endpoint, not after it
// expires or once changed. Its owner only gets one; the token never
// reaches a log line.
func TestRunTokenHTTP(t *testing.T) {
	t.Parallel()
	const key1, key2 = "key-1-0123456789abcdef", "key-2-0123456789abcdef"
	var logs syncBuffer
	f := newFixture(t, Options{Keys: map[string]string{key1: "u1", key2: "u2"}, RunTokenTTL: 5 * time.Minute,
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	runA, runB := f.runningFor("u1"), f.runningFor("u1")

	if resp := do(t, "POST", f.url+"/v1/runs/"+runA.ID+"/token", ""); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a token without a key: %d", resp.StatusCode)
	}
	if resp := do(t, "POST", f.url+"/v1/runs/"+runA.ID+"/token", key2); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("a token for another user's run: %d", resp.StatusCode)
	}
	before := time.Now()
	resp := do(t, "POST", f.url+"/v1/runs/"+runA.ID+"/token", key1)
	var got struct {
		Token     string    `json:"token"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || resp.StatusCode != http.StatusOK || got.Token == "" {
		t.Fatalf("POST token: %d, %+v, %v", resp.StatusCode, got, err)
	}
	if lo, hi := before.Add(5*time.Minute-time.Second), time.Now().Add(5*time.Minute); got.ExpiresAt.Before(lo) || got.ExpiresAt.After(hi) {
		t.Fatalf("expires_at %v, want within [%v, %v]", got.ExpiresAt, lo, hi)
	}

	// The token opens runA's events, with no key.
	resp = do(t, "GET", f.url+"/v1/runs/"+runA.ID+"/events?token="+got.Token, "")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Run-Id") != runA.ID {
		t.Fatalf("events with the token: %d", resp.StatusCode)
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "id: ") && !strings.HasPrefix(line, "event: ") && !strings.HasPrefix(line, ":") {
		t.Fatalf("events with the token began %q, %v", line, err)
	}
	_ = resp.Body.Close()
	// With ?after= too (EventSource cannot send Last-Event-ID on its first
	// open).
	resp = do(t, "GET", f.url+"/v1/runs/"+runA.ID+"/events?after=1&token="+got.Token, "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("events with ?after= and the token: %d", resp.StatusCode)
	}
	_ = resp.Body.Close()

	expired, _ := f.srv.tokens.issue("u1", runA.ID, time.Now().Add(-time.Hour))
	for _, tc := range []struct{ name, method, path, key, want string }{
		{"another run", "GET", "/v1/runs/" + runB.ID + "/events?token=" + got.Token, "", "another run"},
		{"expired", "GET", "/v1/runs/" + runA.ID + "/events?token=" + expired, "", "has expired"},
		{"changed", "GET", "/v1/runs/" + runA.ID + "/events?token=" + got.Token[:len(got.Token)-2] + "xx", "", "is not valid"},
		// A token given is the credential, even beside a valid key.
		{"changed, with a key", "GET", "/v1/runs/" + runA.ID + "/events?token=x" + got.Token, key1, "is not one"},
		{"the run", "GET", "/v1/runs/" + runA.ID + "?token=" + got.Token, "", "a run token opens only"},
		{"another token", "POST", "/v1/runs/" + runA.ID + "/token?token=" + got.Token, "", "a run token opens only"},
		{"cancel", "POST", "/v1/runs/" + runA.ID + "/cancel?token=" + got.Token, "", "a run token opens only"},
		{"messages", "GET", "/v1/threads/" + runA.ThreadID + "/messages?token=" + got.Token, "", "a run token opens only"},
	} {
		resp := do(t, tc.method, f.url+tc.path, tc.key)
		e := readError(t, resp)
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(e.Message, tc.want) {
			t.Errorf("%s: %d %q; want 401 saying %q", tc.name, resp.StatusCode, e.Message, tc.want)
		}
	}
	// The key still opens what the token does not.
	if resp := do(t, "GET", f.url+"/v1/runs/"+runA.ID, key1); resp.StatusCode != http.StatusOK {
		t.Fatalf("GET the run with the key: %d", resp.StatusCode)
	}
	if strings.Contains(logs.String(), got.Token[len(runTokenPrefix):len(runTokenPrefix)+20]) {
		t.Fatalf("a run token was logged:\n%s", logs.String())
	}
}

// TestRunTokenLeftOut: handlers, and whatever they log, see the events
// URL without its token.
func TestRunTokenLeftOut(t *testing.T) {
	t.Parallel()
	s := &Server{auth: NewKeyAuthenticator(map[string]string{"key-0123456789abcdef": "u1"}), tokens: newRunTokens(nil, time.Minute),
		logger: slog.New(slog.DiscardHandler)}
	tok, _ := s.tokens.issue("u1", "run_a", time.Now())
	var rawQuery, requestURI, user string
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/runs/{id}/events", s.authenticated(func(_ http.ResponseWriter, r *http.Request, u string) {
		rawQuery, requestURI, user = r.URL.RawQuery, r.RequestURI, u
	}))
	req := httptest.NewRequest("GET", "/v1/runs/run_a/events?after=3&token="+tok+"&format=native", nil)
	w := httptest.NewRecorder()
	mux.ServeHTTP(w, req)
	if w.Code != http.StatusOK || user != "u1" || strings.Contains(rawQuery+requestURI, tok) || rawQuery != "after=3&format=native" ||
		requestURI != "/v1/runs/run_a/events?after=3&format=native" {
		t.Fatalf("%d: user %q, query %q, request URI %q", w.Code, user, rawQuery, requestURI)
	}
}

// headerAuth is an Authenticator of the kind the security issue adds
// (a trusted backend's header): it stands in for any other.
type headerAuth struct{}

func (headerAuth) Authenticate(r *http.Request) (Identity, error) {
	u := r.Header.Get("X-Test-User")
	if u == "" {
		return Identity{}, agentstream.Errorf(agentstream.CodeUnauthorized, "no X-Test-User")
	}
	return Identity{UserID: u, Via: "test_header"}, nil
}

// TestAuthenticatorSeam: an Authenticator given in Options answers for
// every route (Keys are not consulted), users are kept apart by what it
// answers, and its refusal is a 401 with its message, sent before the
// request's body is read.
func TestAuthenticatorSeam(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{Authenticator: headerAuth{}, Keys: map[string]string{"key-0123456789abcdef": "u1"}})
	send := func(method, path, user string, body io.Reader) *http.Response {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), method, f.url+path, body)
		if err != nil {
			t.Fatal(err)
		}
		if user != "" {
			req.Header.Set("X-Test-User", user)
		}
		req.Header.Set("Authorization", "Bearer key-0123456789abcdef")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = resp.Body.Close() })
		return resp
	}
	resp := send("POST", "/v1/threads", "alice", strings.NewReader(`{}`))
	var th struct {
		ID string `json:"id"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&th); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("create thread as alice: %d, %v", resp.StatusCode, err)
	}
	if resp := send("GET", "/v1/threads/"+th.ID, "alice", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("alice's thread as alice: %d", resp.StatusCode)
	}
	if resp := send("GET", "/v1/threads/"+th.ID, "bob", nil); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("alice's thread as bob: %d", resp.StatusCode)
	}
	for _, p := range []string{"/v1/agents", "/v1/threads/" + th.ID, "/v1/runs/run_x/events"} {
		resp := send("GET", p, "", nil)
		if e := readError(t, resp); resp.StatusCode != http.StatusUnauthorized || e.Message != "no X-Test-User" {
			t.Errorf("GET %s refused: %d %q", p, resp.StatusCode, e.Message)
		}
	}
	// Refused before the body: a body that never comes does not hold the
	// answer back.
	pr, pw := io.Pipe()
	t.Cleanup(func() { _ = pw.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", f.url+"/v1/chat", pr)
	req.ContentLength = 1 << 10
	go func() { _, _ = pw.Write([]byte(`{"query":`)) }()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("a refused request with a body that never ends: %v", err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a refused request with a body that never ends: %d", resp.StatusCode)
	}
}
