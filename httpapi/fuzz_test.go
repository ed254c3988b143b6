package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/agent"
	"github.com/agentstream/agentstream/internal/sse"
	"github.com/agentstream/agentstream/memlog"
	"github.com/agentstream/agentstream/sqlite"
)

// echoModel answers every call at once with the last message's length,
// so that a request the fuzzer gets accepted runs to its end quickly.
type echoModel struct{}

func (echoModel) Stream(_ context.Context, _ agentstream.ModelRequest, onDelta func(agentstream.ModelDelta)) (agentstream.ModelResult, error) {
	onDelta(agentstream.ModelDelta{Text: "ok"})
	return agentstream.ModelResult{Content: "ok", FinishReason: "stop"}, nil
}

// fuzzServer is a server with no identity configured (the local user,
// on loopback names), on SQLite and memlog, whose agent's instructions
// take an optional context key; thread is a thread of the local user.
type fuzzServer struct {
	srv     *Server
	handler http.Handler
	thread  string
}

func newFuzzServer(tb testing.TB) *fuzzServer {
	tb.Helper()
	store, err := sqlite.Open(context.Background(), filepath.Join(tb.TempDir(), "db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = store.Close() })
	log := memlog.New(memlog.Options{})
	runner, err := agent.New(agent.Config{DefaultModel: "m"}, agent.Deps{
		Store: store, Log: log, Model: echoModel{},
		Agents: []agentstream.Agent{{Name: "assistant", Instructions: "Help.{{with .name}} The user is {{.}}.{{end}}"}},
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = runner.Shutdown(ctx)
	})
	srv := New(runner, store, log, Options{Heartbeat: time.Second})
	tb.Cleanup(srv.Close)
	f := &fuzzServer{srv: srv, handler: srv.Handler()}
	resp := f.do(tb, http.MethodPost, "/v1/threads", `{"title": "fuzz"}`, nil)
	var th agentstream.Thread
	if resp.Code != http.StatusCreated || json.Unmarshal(resp.Body.Bytes(), &th) != nil {
		tb.Fatalf("creating a thread: %d %s", resp.Code, resp.Body)
	}
	f.thread = th.ID
	return f
}

// do sends a request to the handler, as a loopback client would.
func (f *fuzzServer) do(tb testing.TB, method, target, body string, header http.Header) *httptest.ResponseRecorder {
	tb.Helper()
	req := httptest.NewRequest(method, "http://localhost"+target, strings.NewReader(body))
	req.Host = "localhost"
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header[k] = v
	}
	ctx, cancel := context.WithTimeout(req.Context(), 10*time.Second)
	defer cancel()
	rec := httptest.NewRecorder()
	f.handler.ServeHTTP(rec, req.WithContext(ctx))
	return rec
}

// checkAnswer checks what any request gets: never a 5xx; an error is a
// JSON object {"error": {"code", "message"}} (OpenAI's routes add type
// and param), with a code the status table maps to that status; a stream
// is well-formed SSE that reaches its end; any other answer is JSON.
func checkAnswer(t *testing.T, rec *httptest.ResponseRecorder, openAI bool) {
	checkAnswerShape(t, rec, openAI, false)
}

// checkAnswerShape is checkAnswer that, with anyShape, takes an error of
// either shape (a path that may match no route).
func checkAnswerShape(t *testing.T, rec *httptest.ResponseRecorder, openAI, anyShape bool) {
	t.Helper()
	body := rec.Body.Bytes()
	if rec.Code >= 500 {
		t.Fatalf("status %d: %s", rec.Code, body)
	}
	if rec.Code >= 400 {
		var e struct {
			Error struct {
				Code    string  `json:"code"`
				Message string  `json:"message"`
				Type    *string `json:"type"`
			} `json:"error"`
		}
		dec := json.NewDecoder(bytes.NewReader(body))
		if err := dec.Decode(&e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
			t.Fatalf("status %d: the error is not {\"error\": {\"code\", \"message\"}}: %v: %s", rec.Code, err, body)
		}
		if openAI != (e.Error.Type != nil) && !anyShape {
			t.Fatalf("status %d: an error of OpenAI's shape %v on a route that is OpenAI's %v: %s", rec.Code, e.Error.Type != nil, openAI, body)
		}
		if got := HTTPStatus(agentstream.Errorf(agentstream.Code(e.Error.Code), "x")); got != rec.Code {
			t.Fatalf("status %d with code %s, which maps to %d", rec.Code, e.Error.Code, got)
		}
		return
	}
	if rec.Code == http.StatusNoContent {
		return
	}
	if strings.HasPrefix(rec.Header().Get("Content-Type"), "text/event-stream") {
		r := sse.NewReader(bytes.NewReader(body))
		n := 0
		for {
			_, err := r.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("the stream is not SSE: %v: %.500s", err, body)
			}
			n++
		}
		if n == 0 {
			t.Fatalf("an empty stream: %q", body)
		}
		return
	}
	if !json.Valid(body) {
		t.Fatalf("status %d: the answer is not JSON: %.500s", rec.Code, body)
	}
}

// checkDecode checks decodeBody on body into v: it refuses with an
// *agentstream.Error of a 4xx status that says something, or accepts a
// value that encodes back to JSON.
func (f *fuzzServer) checkDecode(t *testing.T, body string, v any, strict bool) {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
	err := f.srv.decodeBody(httptest.NewRecorder(), req, v, strict)
	if err != nil {
		var e *agentstream.Error
		if !errors.As(err, &e) || e.Message == "" {
			t.Fatalf("decode error %v (%T) is not a described *agentstream.Error", err, err)
		}
		if st := HTTPStatus(err); st < 400 || st > 499 {
			t.Fatalf("decode error %v has status %d", err, st)
		}
		return
	}
	if _, err := json.Marshal(v); err != nil {
		t.Fatalf("an accepted body does not encode back: %v", err)
	}
}

// bodySeeds are bodies every endpoint's fuzzing starts from: hostile
// JSON of every kind, besides each endpoint's valid ones.
var bodySeeds = []string{
	``, `null`, `[]`, `"x"`, `1`, `{}`, `{`, `{"a":1}{"b":2}`, `{"a":1} x`,
	`{"title":"\u0000"}`, `{"query":"\ud800"}`, "{\"query\":\"\xff\"}",
	strings.Repeat(`[`, 65) + strings.Repeat(`]`, 65),
	`{"query":"hi\n\ndata: injected\n\n","thread_id":"../../etc/passwd"}`,
	`{"query":1e999}`, `{"context":{"name":{"a":[1,2,{"b":null}]}}}`,
}

// fuzzBody fuzzes one endpoint that takes a JSON body: the answer
// (checkAnswer) and the decoder into the endpoint's request type
// (checkDecode), seeded with its valid bodies and bodySeeds.
func fuzzBody(f *testing.F, method, path string, newReq func() any, strict, openAI bool, seeds ...string) {
	for _, s := range append(seeds, bodySeeds...) {
		f.Add(s)
	}
	s := newFuzzServer(f)
	f.Fuzz(func(t *testing.T, body string) {
		p := strings.ReplaceAll(path, "{thread}", s.thread)
		rec := s.do(t, method, p, body, nil)
		checkAnswer(t, rec, openAI)
		s.checkDecode(t, body, newReq(), strict)
	})
}

func FuzzCreateThread(f *testing.F) {
	f.Add(`{"title": "Names", "metadata": {"k": [1, "v"]}, "context": {"name": "Hana"}}`)
	for _, s := range bodySeeds {
		f.Add(s)
	}
	s := newFuzzServer(f)
	f.Fuzz(func(t *testing.T, body string) {
		rec := s.do(t, http.MethodPost, "/v1/threads", body, nil)
		checkAnswer(t, rec, false)
		s.checkDecode(t, body, &createThreadRequest{}, true)
		if rec.Code != http.StatusCreated {
			return
		}
		// Accepted: the thread reads back as it was answered.
		var created agentstream.Thread
		if err := json.Unmarshal(rec.Body.Bytes(), &created); err != nil {
			t.Fatal(err)
		}
		got := s.do(t, http.MethodGet, "/v1/threads/"+url.PathEscape(created.ID), "", nil)
		if got.Code != http.StatusOK || !jsonEqual(got.Body.Bytes(), rec.Body.Bytes()) {
			t.Fatalf("the thread created as %s reads back as %d %s", rec.Body, got.Code, got.Body)
		}
	})
}

// jsonEqual reports whether two JSON texts hold the same value.
func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}

func FuzzUpdateThread(f *testing.F) {
	fuzzBody(f, http.MethodPatch, "/v1/threads/{thread}", func() any { return &updateThreadRequest{} }, true, false,
		`{"title": "New"}`, `{"metadata": {"a": "b"}}`, `{"agent": "x"}`, `{"title": null}`)
}

func FuzzCreateRun(f *testing.F) {
	fuzzBody(f, http.MethodPost, "/v1/threads/{thread}/runs", func() any { return &createRunRequest{} }, true, false,
		`{"input": "hi"}`, `{"input": "hi", "context": {"name": "Hana"}, "multitask": "enqueue", "on_disconnect": "cancel"}`,
		`{"input": "hi", "agent": "nobody"}`, `{"input": "hi", "multitask": "sometimes"}`)
}

func FuzzChat(f *testing.F) {
	fuzzBody(f, http.MethodPost, "/v1/chat", func() any { return &map[string]json.RawMessage{} }, false, false,
		`{"query": "hi"}`, `{"query": "hi", "thread_id": "hana-1", "baby_name": "Hana", "pregnancy_week": 12}`,
		`{"query": "hi", "name": "Sam", "multitask": "interrupt"}`, `{"query": ""}`, `{"query": 3}`)
}

func FuzzChatCompletions(f *testing.F) {
	fuzzBody(f, http.MethodPost, "/v1/chat/completions", func() any { return &chatCompletionRequest{} }, false, true,
		`{"model": "assistant", "messages": [{"role": "user", "content": "hi"}]}`,
		`{"model": "assistant", "stream": true, "stream_options": {"include_usage": true}, "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": [{"type": "text", "text": "hi"}]}]}`,
		`{"model": "assistant", "messages": [{"role": "tool", "content": "x"}]}`, `{"model": "assistant", "n": 2, "messages": []}`)
}

func FuzzUIChat(f *testing.F) {
	fuzzBody(f, http.MethodPost, "/api/chat", func() any { return &uiChatRequest{} }, true, false,
		`{"id": "chat-1", "trigger": "submit-message", "messages": [{"id": "m1", "role": "user", "parts": [{"type": "text", "text": "hi"}]}]}`,
		`{"id": "chat-2", "messages": [{"role": "user", "parts": [{"type": "step-start"}, {"type": "file"}]}]}`,
		`{"id": "chat-3", "trigger": "regenerate-message", "messages": []}`)
}

func FuzzAGUI(f *testing.F) {
	fuzzBody(f, http.MethodPost, "/ag-ui/assistant", func() any { return &aguiInput{} }, false, false,
		`{"threadId": "t-1", "runId": "r-1", "messages": [{"id": "1", "role": "user", "content": "hi"}], "tools": [], "context": [{"description": "name", "value": "Sam"}]}`,
		`{"threadId": "t-2", "runId": "r", "messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "binary"}]}]}`,
		`{"threadId": "t-3", "runId": "r", "messages": [{"role": "assistant", "content": "x"}], "resume": [1]}`)
}

// FuzzQueryParams fuzzes what a GET takes from its URL: limit and
// cursor of every listing, format and after of the events, and
// Last-Event-ID. A refusal is a 400 *agentstream.Error; an accepted
// limit is in range, and an accepted cursor is of its listing and
// encodes to a cursor that decodes the same.
func FuzzQueryParams(f *testing.F) {
	good := pageCursor{Kind: "threads", At: 1700000000000000, ID: "thr_1"}.encode()
	for _, s := range [][4]string{
		{"20", good, "native", "3"}, {"0", "", "ag-ui", ""}, {"101", "x", "openai", "-1"}, {"1e2", "e30", "SEED", "9223372036854775808"},
		{" 5", pageCursor{Kind: "messages", Seq: 4}.encode(), "ui", "0x10"}, {"", "eyJrIjoidGhyZWFkcyJ9", "\n", "1\r\nX: y"},
	} {
		f.Add(s[0], s[1], s[2], s[3])
	}
	f.Fuzz(func(t *testing.T, limit, cursor, format, after string) {
		q := url.Values{"limit": {limit}, "cursor": {cursor}, "format": {format}, "after": {after}}
		r := httptest.NewRequest(http.MethodGet, "/x?"+q.Encode(), nil)
		r.Header["Last-Event-Id"] = []string{after}
		bad := func(err error) {
			t.Helper()
			var e *agentstream.Error
			if !errors.As(err, &e) || HTTPStatus(err) != http.StatusBadRequest || e.Message == "" {
				t.Fatalf("%v (%T) is not a described 400", err, err)
			}
		}
		for _, kind := range []string{"threads", "runs", "messages"} {
			n, c, err := pageParams(r, kind)
			if err != nil {
				bad(err)
				continue
			}
			if n < 1 || n > maxPageLimit {
				t.Fatalf("limit %q accepted as %d", limit, n)
			}
			if c != nil {
				again, ok := decodeCursor(c.encode())
				if c.Kind != kind || !ok || again != *c {
					t.Fatalf("cursor %q accepted for %s as %+v, which re-encodes to %+v, %v", cursor, kind, *c, again, ok)
				}
			}
		}
		if _, err := formatParam(r); err != nil {
			bad(err)
		}
		if n, err := afterParam(r); err != nil {
			bad(err)
		} else if n < 0 {
			t.Fatalf("after %q accepted as %d", after, n)
		}
	})
}

// FuzzPathIDs fuzzes the ids of every path that names a thread or a run:
// whatever the id (escaped into the path), the answer is a 4xx of the
// error shape (checkAnswer), never a 5xx, for ids the local user has not.
func FuzzPathIDs(f *testing.F) {
	for _, s := range []string{"thr_1", "run_1", "..", "a/b", "\x00", "\xff", strings.Repeat("x", 300), "%2F", " ", "hana-1"} {
		f.Add(s)
	}
	s := newFuzzServer(f)
	f.Fuzz(func(t *testing.T, id string) {
		if id == s.thread || id == "" || id == "." || id == ".." {
			return // the mux redirects a path with a dot segment
		}
		e := url.PathEscape(id)
		for _, p := range []struct{ method, path, body string }{
			{http.MethodGet, "/v1/threads/" + e, ""}, {http.MethodGet, "/v1/threads/" + e + "/messages", ""},
			{http.MethodGet, "/v1/threads/" + e + "/runs", ""}, {http.MethodPost, "/v1/threads/" + e + "/runs", `{"input": "hi"}`},
			{http.MethodPatch, "/v1/threads/" + e, `{"title": "t"}`}, {http.MethodDelete, "/v1/threads/" + e, ""},
			{http.MethodGet, "/v1/runs/" + e, ""}, {http.MethodGet, "/v1/runs/" + e + "/events", ""},
			{http.MethodPost, "/v1/runs/" + e + "/cancel", ""}, {http.MethodPost, "/v1/runs/" + e + "/token", ""},
			{http.MethodGet, "/api/chat/" + e + "/stream", ""}, {http.MethodGet, "/v1/models/" + e, ""},
		} {
			rec := s.do(t, p.method, p.path, p.body, nil)
			checkAnswerShape(t, rec, false, strings.HasPrefix(p.path, "/v1/models/"))
			if rec.Code < 400 && rec.Code != http.StatusNoContent {
				t.Fatalf("%s %s: %d %s for an id nobody has", p.method, p.path, rec.Code, rec.Body)
			}
		}
	})
}

// FuzzAuthorization fuzzes the credential headers on a server with an
// API key, a service key and JWTs (a stand-in verifier): only the exact
// key, the exact service key naming one valid user, or a JWT the
// verifier takes, authenticates, as their user; everything else is a
// 401 *agentstream.Error, and the error never repeats the credential.
func FuzzAuthorization(f *testing.F) {
	for _, s := range [][2]string{
		{"Bearer key-alice-0123456789", ""}, {"bearer key-alice-0123456789", ""}, {"Bearer svc-0123456789abcdef", "bob"},
		{"Bearer svc-0123456789abcdef", ""}, {"Bearer svc-0123456789abcdef", "bo\nb"}, {"Bearer jwt.ok.sig", ""}, {"Bearer jwt.carol", ""},
		{"Bearer jwt.", ""}, {"Basic a2V5", ""}, {"Bearer  key-alice-0123456789", ""}, {"Bearer", ""}, {"", "bob"},
		{"Bearer key-alice-0123456789\x00", ""}, {"Bearer rt1.e30.e30", ""},
	} {
		f.Add(s[0], s[1])
	}
	a := NewIdentities(map[string]string{"key-alice-0123456789": "alice"}, map[string]string{"svc-0123456789abcdef": "backend"}, fakeJWT{}, looksJWT)
	f.Fuzz(func(t *testing.T, authz, user string) {
		r := httptest.NewRequest(http.MethodGet, "/v1/agents", nil)
		r.Header["Authorization"] = []string{authz}
		if user != "" {
			r.Header[UserHeader] = []string{user}
		}
		id, err := a.Authenticate(r)
		if err != nil {
			var e *agentstream.Error
			if !errors.As(err, &e) || HTTPStatus(err) != http.StatusUnauthorized || id != (Identity{}) {
				t.Fatalf("%q: %+v, %v (%T); want a 401 *agentstream.Error", authz, id, err, err)
			}
			if tok, ok := bearer(authz); ok && len(tok) >= 8 && strings.Contains(e.Message, tok) {
				t.Fatalf("the error repeats the credential: %s", e.Message)
			}
			return
		}
		tok, _ := bearer(authz)
		switch id.Via {
		case ViaAPIKey:
			if tok != "key-alice-0123456789" || id.UserID != "alice" || user != "" {
				t.Fatalf("%q as %+v", authz, id)
			}
		case ViaServiceKey:
			if tok != "svc-0123456789abcdef" || id.UserID != user || !validUserID(user) {
				t.Fatalf("%q naming %q as %+v", authz, user, id)
			}
		case ViaJWT:
			if tok != "jwt.ok.sig" || id.UserID != "ada" || user != "" {
				t.Fatalf("%q as %+v", authz, id)
			}
		default:
			t.Fatalf("%q as %+v", authz, id)
		}
	})
}

// FuzzRunTokenVerify: no token but one issued verifies, and only for its
// run before it expires; every refusal is a 401 that repeats nothing of
// the token.
func FuzzRunTokenVerify(f *testing.F) {
	rt := newRunTokens([]byte("0123456789abcdef0123456789abcdef"), time.Minute)
	now := time.Unix(1800000000, 0)
	issued, _ := rt.issue("u1", "run_a", now)
	for _, s := range []string{issued, issued + "x", "rt1.", "rt1..", "rt1.e30.", "rt1." + strings.Repeat("A", 100) + ".x", "", "key"} {
		f.Add(s, "run_a")
	}
	f.Fuzz(func(t *testing.T, token, run string) {
		id, err := rt.verify(token, run, now)
		if err != nil {
			if agentstream.CodeOf(err) != agentstream.CodeUnauthorized || HTTPStatus(err) != http.StatusUnauthorized || id != (Identity{}) {
				t.Fatalf("%q: %+v, %v", token, id, err)
			}
			if len(token) > 8 && strings.Contains(err.Error(), token) {
				t.Fatalf("the error repeats the token: %v", err)
			}
			return
		}
		if token != issued || run != "run_a" || id != (Identity{UserID: "u1", Via: ViaRunToken, RunID: "run_a"}) {
			t.Fatalf("%q for %q verified as %+v", token, run, id)
		}
	})
}
