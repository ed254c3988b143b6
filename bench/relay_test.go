package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/httpapi/wire"
	"github.com/agentstream/agentstream/internal/sse"
)

func TestContentOf(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		data, want string
		ok         bool
	}{
		{`{"choices":[{"index":0,"delta":{"content":"t1764000000000000 hello"}}]}`, "t1764000000000000 hello", true},
		{`{"choices":[{"index":0,"delta":{"content":""}}]}`, "", true},
		{`{"choices":[{"index":0,"delta":{"role":"assistant"}}]}`, "", false},
		{`{"choices":[{"delta":{"content":"cut`, "", false},
		{`{"choices":[{"delta":{"content":"a\"b"}}]}`, `a\"b`, true},
		{`{"choices":[{"delta":{"content":"a\\"}}]}`, `a\\`, true},
	} {
		got, ok := contentOf([]byte(tc.data))
		if ok != tc.ok || string(got) != tc.want {
			t.Errorf("contentOf(%s) = %q, %v; want %q, %v", tc.data, got, ok, tc.want, tc.ok)
		}
	}
}

// upstream is a model API that streams texts, one chunk each as
// encoding/json writes it (after a chunk with the role only and one with
// empty content, which are not tokens), then [DONE]; it counts the
// requests' connections and protocol. hold, when not nil, is called
// before each answer.
type upstream struct {
	hold  func()
	texts []string
	mu    sync.Mutex
	conns map[string]int // remote address → HTTP major version
}

func newUpstream(t *testing.T, hold func(), texts ...string) (*upstream, *httptest.Server) {
	t.Helper()
	u := &upstream{hold: hold, texts: texts, conns: map[string]int{}}
	srv := httptest.NewUnstartedServer(u)
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	t.Cleanup(srv.Close)
	return u, srv
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	u.mu.Lock()
	u.conns[r.RemoteAddr] = r.ProtoMajor
	u.mu.Unlock()
	if u.hold != nil {
		u.hold()
	}
	w.Header().Set("Content-Type", "text/event-stream")
	chunk := func(delta map[string]string) {
		b, _ := json.Marshal(map[string]any{"id": "c1", "choices": []any{map[string]any{"index": 0, "delta": delta}}})
		_, _ = fmt.Fprintf(w, "data: %s\n\n", b)
	}
	chunk(map[string]string{"role": "assistant"})
	chunk(map[string]string{"content": ""})
	for _, text := range u.texts {
		chunk(map[string]string{"content": text})
	}
	_, _ = io.WriteString(w, "data: [DONE]\n\n")
}

// relayServer serves the relay against the model API at modelURL.
func relayServer(t *testing.T, modelURL string, h2c bool) *httptest.Server {
	t.Helper()
	h, transport := newRelay(modelURL, h2c)
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		srv.Close()
		transport.CloseIdleConnections()
	})
	return srv
}

// relayTexts are tokens that need every kind of JSON escape, and plain
// ones as the simulator writes them.
var relayTexts = []string{
	"t1764000000000000 hello", " world", `<b>"quoted"</b> & more`, "tab\there\nline", `back\slash`,
	"é, 世界, \u2028\u2029 and \U0001F600", "\x01\x1f control",
}

// TestRelaySeedFormat: the relay's seed endpoint writes what agentstream's
// seed encoder writes for the same deltas and a completed run, byte for
// byte, under the headers agentstream's seed endpoint sets.
func TestRelaySeedFormat(t *testing.T) {
	t.Parallel()
	_, model := newUpstream(t, nil, relayTexts...)
	srv := relayServer(t, model.URL+"/v1", false)
	for i := range 2 { // each request a new conversation
		resp, err := http.Post(srv.URL+"/v1/chat", "application/json", strings.NewReader(`{"query":"Hello"}`))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d, %v", resp.StatusCode, err)
		}
		threadID, runID := resp.Header.Get("X-Thread-Id"), resp.Header.Get("X-Run-Id")
		if n := fmt.Sprint(i + 1); threadID != "thr_relay_"+n || runID != "run_relay_"+n {
			t.Errorf("request %d: thread %q, run %q", i+1, threadID, runID)
		}
		enc := wire.NewSeed(wire.Stream{ThreadID: threadID, RunID: runID})
		want := http.Header{}
		enc.Header(want)
		for k := range want {
			if resp.Header.Get(k) != want.Get(k) {
				t.Errorf("header %s: %q, want %q", k, resp.Header.Get(k), want.Get(k))
			}
		}
		wantBody := enc.Start(nil)
		for _, text := range relayTexts {
			wantBody = wire.EncodeEvent(enc, wantBody, agentstream.NewDeltaEvent("msg_1", text))
		}
		wantBody = wire.EncodeEvent(enc, wantBody, agentstream.Event{Type: agentstream.EventRunCompleted, Data: []byte(`{}`)})
		if string(got) != string(wantBody) {
			t.Fatalf("request %d: the relay wrote\n%s\nagentstream's seed encoder\n%s", i+1, got, wantBody)
		}
	}
}

// TestRelayNativeFormat: the relay's native runs carry each token's text
// as agentstream's message.delta does, then run.completed.
func TestRelayNativeFormat(t *testing.T) {
	t.Parallel()
	_, model := newUpstream(t, nil, relayTexts...)
	srv := relayServer(t, model.URL+"/v1", false)
	resp, err := http.Post(srv.URL+"/v1/threads/thr_1/runs", "application/json", strings.NewReader(`{"input":"Hello"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	r := sse.NewReader(resp.Body)
	var texts []string
	for {
		ev, err := r.Next()
		if err != nil {
			t.Fatalf("after %q: %v", texts, err)
		}
		if ev.Type == "run.completed" {
			break
		}
		d, err := ParseNativeDelta(ev.Data)
		if ev.Type != "message.delta" || err != nil {
			t.Fatalf("event %s %s: %v", ev.Type, ev.Data, err)
		}
		texts = append(texts, d)
	}
	if !slices.Equal(texts, relayTexts) {
		t.Errorf("texts %q, want %q", texts, relayTexts)
	}
}

// TestRelayUpstream: with h2c the relay's model calls share one HTTP/2
// connection; without, each concurrent call has an HTTP/1.1 connection of
// its own.
func TestRelayUpstream(t *testing.T) {
	t.Parallel()
	const streams = 20
	for _, h2c := range []bool{false, true} {
		t.Run(fmt.Sprintf("h2c=%v", h2c), func(t *testing.T) {
			t.Parallel()
			gate := make(chan struct{})
			var arrived sync.WaitGroup
			arrived.Add(streams)
			// Every call is held until all have arrived: they are open at
			// once.
			u, model := newUpstream(t, func() { arrived.Done(); <-gate }, "a", "b")
			go func() { arrived.Wait(); close(gate) }()
			srv := relayServer(t, model.URL+"/v1", h2c)
			var wg sync.WaitGroup
			for range streams {
				wg.Go(func() {
					resp, err := http.Post(srv.URL+"/v1/chat", "application/json", strings.NewReader(`{"query":"Hello"}`))
					if err != nil {
						t.Error(err)
						return
					}
					b, _ := io.ReadAll(resp.Body)
					_ = resp.Body.Close()
					if !strings.HasSuffix(string(b), "data: {\"status\":\"done\"}\n\n") {
						t.Errorf("stream %q", b)
					}
				})
			}
			wg.Wait()
			u.mu.Lock()
			defer u.mu.Unlock()
			want, proto := streams, 1
			if h2c {
				want, proto = 1, 2
			}
			if len(u.conns) != want {
				t.Errorf("%d concurrent calls over %d connections, want %d", streams, len(u.conns), want)
			}
			for addr, p := range u.conns {
				if p != proto {
					t.Errorf("%s: HTTP/%d, want HTTP/%d", addr, p, proto)
				}
			}
		})
	}
}

// TestRelayUpstreamFails: a model call that fails is a 502 to the client.
func TestRelayUpstreamFails(t *testing.T) {
	t.Parallel()
	model := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusServiceUnavailable)
	}))
	t.Cleanup(model.Close)
	srv := relayServer(t, model.URL+"/v1", false)
	for _, path := range []string{"/v1/chat", "/v1/threads/thr_1/runs"} {
		resp, err := http.Post(srv.URL+path, "application/json", strings.NewReader(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusBadGateway {
			t.Errorf("%s: status %d, want 502", path, resp.StatusCode)
		}
	}
	model.Close()
	resp, err := http.Post(srv.URL+"/v1/chat", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("model down: status %d, want 502", resp.StatusCode)
	}
}
