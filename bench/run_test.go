package bench

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentstream/agentstream/sim"
)

// fakeServer answers the native and seed endpoints like agentstream, each
// run streaming as the next of behaviors says (the last repeats).
func fakeServer(t *testing.T, behaviors ...string) *httptest.Server {
	t.Helper()
	var n atomic.Int64
	var threads atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.NotFound(w, r)
			return
		}
		if r.URL.Path == "/v1/threads" {
			w.WriteHeader(http.StatusCreated)
			fmt.Fprintf(w, `{"id":"thr_%d"}`, threads.Add(1))
			return
		}
		seed := r.URL.Path == "/v1/chat"
		if !seed && !strings.HasSuffix(r.URL.Path, "/runs") {
			http.NotFound(w, r)
			return
		}
		b := behaviors[min(int(n.Add(1)), len(behaviors))-1]
		if b == "429" {
			w.Header().Set("Retry-After", "1")
			http.Error(w, `{"error":{"code":"overloaded"}}`, http.StatusTooManyRequests)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("X-Thread-Id", "thr_seed")
		rc := http.NewResponseController(w)
		seq := 0
		event := func(typ, data string) {
			seq++
			if seed {
				fmt.Fprintf(w, "data: %s\n\n", data)
			} else {
				fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", seq, typ, data)
			}
			_ = rc.Flush()
		}
		delta := func(i, of int) {
			tok := string(sim.AppendStampToken(nil, i, of, time.Now()))
			if seed {
				event("", fmt.Sprintf(`{"delta":%q,"complete":false}`, tok))
			} else {
				event("message.delta", fmt.Sprintf(`{"message_id":"msg_1","delta":%q}`, tok))
			}
		}
		if !seed {
			_, _ = w.Write([]byte(": ok\n\n"))
			_ = rc.Flush()
			event("run.created", `{"run_id":"run_1"}`)
		}
		if b == "late" {
			// What comes before the first token is not an answer: a
			// seed tool line here, ": ok" and run.created on native.
			if seed {
				event("", `{"tool":"search","status":"start"}`)
			}
			time.Sleep(lateBy)
			b = "ok"
		}
		switch b {
		case "ok":
			for i := range 3 {
				delta(i, 3)
				time.Sleep(2 * time.Millisecond)
			}
			if seed {
				event("", `{"response":"x","complete":true}`)
				event("", `{"status":"done"}`)
			} else {
				event("run.completed", `{"run_id":"run_1","status":"completed"}`)
			}
		case "broken":
			delta(0, 3)
			panic(http.ErrAbortHandler) // the connection is cut
		case "missing_terminal":
			delta(0, 3)
		case "failed":
			delta(0, 3)
			if seed {
				event("", `{"error":"upstream failed","code":"upstream_error"}`)
				event("", `{"status":"done"}`)
			} else {
				event("run.failed", `{"run_id":"run_1","status":"failed","error":{"code":"upstream_error","message":"x"}}`)
			}
		case "bad_event":
			event("message.delta", `{"delta":`)
		case "no_tokens":
			if seed {
				event("", `{"response":"","complete":true}`)
				event("", `{"status":"done"}`)
			} else {
				event("run.completed", `{"run_id":"run_1","status":"completed"}`)
			}
		case "hang":
			<-r.Context().Done()
		default:
			t.Errorf("unknown behavior %q", b)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestRunCountsErrors runs the clients against a fake server whose runs
// fail in every way the report names, plus stalled and direct clients.
func TestBenchRunCountsErrors(t *testing.T) {
	t.Parallel()
	model, err := sim.Start("127.0.0.1:0", sim.Options{Tokens: 4, Pace: 5 * time.Millisecond, TTFT: -1, Stamp: true, Record: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = model.Close() })
	for _, endpoint := range []string{EndpointNative, EndpointSeed} {
		t.Run(endpoint, func(t *testing.T) {
			t.Parallel()
			// The two stalled clients open first and get the first two.
			srv := fakeServer(t, "ok", "ok", "ok", "429", "broken", "missing_terminal", "failed", "bad_event", "no_tokens")
			var progress strings.Builder
			rep, err := Run(context.Background(), Config{
				Streams: 7, Stalled: 2, Direct: 2, Endpoint: endpoint, Ramp: 20 * time.Millisecond, Duration: 30 * time.Second,
				URL: srv.URL, SimURL: model.URL(), ServerPID: os.Getpid(),
			}, &progress)
			if err != nil {
				t.Fatal(err)
			}
			failed := "run.failed:upstream_error"
			if endpoint == EndpointSeed {
				failed = "seed_error:upstream_error"
			}
			want := map[string]int{"http_429": 1, "broken_stream": 1, "missing_terminal": 1, failed: 1, "bad_event": 1, "no_tokens": 1}
			s := rep.Server
			if s.Runs != 7 || s.Completed != 1 || s.ErrorCount != 6 || !maps.Equal(s.Errors, want) {
				t.Errorf("server path: %d runs, %d completed, errors %v; want 7, 1, %v", s.Runs, s.Completed, s.Errors, want)
			}
			// The ok run and the three that sent a token before failing.
			if s.Tokens != 3+3 || s.TokenLatency.N != 6 || s.TTFT.N != 4 || s.TTFB.N != 6 || s.MaxOpen < 1 {
				t.Errorf("server path: %+v", s)
			}
			if threads := map[string]int{EndpointNative: 7, EndpointSeed: 0}[endpoint]; s.CreateThread.N != threads {
				t.Errorf("%d thread creations timed, want %d", s.CreateThread.N, threads)
			}
			d := rep.Direct
			if d.Runs != 2 || d.Completed != 2 || d.ErrorCount != 0 || d.Tokens != 8 || d.TokenLatency.N != 8 || d.TokenGap.N != 6 {
				t.Errorf("direct path: %+v", d)
			}
			if !rep.Stamps || rep.Stalled == nil || rep.Stalled.Opened != 2 || rep.Stalled.ErrorCount != 0 {
				t.Errorf("stamps %v, stalled %+v", rep.Stamps, rep.Stalled)
			}
			if !rep.ServerMinusDirect.TokenLatency.Valid || rep.DurationCapReached {
				t.Errorf("report %+v", rep)
			}
			if runtime.GOOS == "linux" && (rep.ServerProcess == nil || rep.ServerProcess.PID != os.Getpid() || rep.ServerProcess.RSSBefore <= 0) {
				t.Errorf("server process %+v (this test's own)", rep.ServerProcess)
			}
			if !strings.Contains(progress.String(), "bench: server "+srv.URL) {
				t.Errorf("progress: %q", progress.String())
			}
		})
	}
}

// lateBy is how long the fake server's "late" runs wait between their
// first byte and their first token: long enough that a first byte read
// late by a busy machine still comes well before it.
const lateBy = 200 * time.Millisecond

// TestBenchFirstToken: time to first token counts from the request to
// the first token's text, not to the first byte (a comment, run.created,
// a seed tool line), on both endpoints.
func TestBenchFirstToken(t *testing.T) {
	t.Parallel()
	for _, endpoint := range []string{EndpointNative, EndpointSeed} {
		t.Run(endpoint, func(t *testing.T) {
			t.Parallel()
			srv := fakeServer(t, "late")
			rep, err := Run(context.Background(), Config{Streams: 3, Direct: -1, Endpoint: endpoint, Ramp: -1, Duration: 30 * time.Second, URL: srv.URL}, nil)
			if err != nil {
				t.Fatal(err)
			}
			s := rep.Server
			if s.Completed != 3 || s.TTFT.N != 3 || s.TTFB.N != 3 {
				t.Fatalf("server path %+v", s)
			}
			// Each run's token was sent lateBy after its request came,
			// and its first byte at once. Not "TTFB + lateBy": the
			// client can read the first byte late (a busy machine, CI)
			// and the token on time, and the gap is then shorter.
			if s.TTFT.P50 < ms(lateBy) || s.TTFT.P50 <= s.TTFB.P50 {
				t.Errorf("first token %+v, first byte %+v: the token came %s after the request, after the first byte", s.TTFT, s.TTFB, lateBy)
			}
		})
	}
}

// TestBenchRunRelay: the bench's clients of both endpoints read the relay
// to the end, with every token's latency, over either upstream.
func TestBenchRunRelay(t *testing.T) {
	t.Parallel()
	const streams, tokens = 4, 5
	model, err := sim.Start("127.0.0.1:0", sim.Options{Tokens: tokens, Pace: 2 * time.Millisecond, TTFT: -1, Stamp: true, Record: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = model.Close() })
	for _, endpoint := range []string{EndpointNative, EndpointSeed} {
		for _, h2c := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/h2c=%v", endpoint, h2c), func(t *testing.T) {
				t.Parallel()
				srv := relayServer(t, model.URL(), h2c)
				rep, err := Run(context.Background(), Config{
					Streams: streams, Direct: 1, Endpoint: endpoint, Ramp: -1, Duration: 30 * time.Second,
					URL: srv.URL, SimURL: model.URL(),
				}, nil)
				if err != nil {
					t.Fatal(err)
				}
				s := rep.Server
				if s.Completed != streams || s.ErrorCount != 0 || s.Tokens != streams*tokens || s.TTFT.N != streams || s.TokenLatency.N != streams*tokens {
					t.Errorf("server path %+v", s)
				}
				if !rep.ServerMinusDirect.TTFT.Valid || !rep.ServerMinusDirect.TokenLatency.Valid || rep.Settings.Upstream != "" {
					t.Errorf("report %+v", rep)
				}
			})
		}
	}
}

// TestRunDurationCap: streams still open at the cap are cut and counted
// as timeouts, and Run returns soon after it.
func TestBenchRunDurationCap(t *testing.T) {
	t.Parallel()
	srv := fakeServer(t, "hang")
	began := time.Now()
	rep, err := Run(context.Background(), Config{Streams: 3, Direct: -1, Ramp: -1, Duration: 300 * time.Millisecond, URL: srv.URL}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(began); took > 10*time.Second {
		t.Errorf("Run took %s past a 300ms cap", took)
	}
	if !rep.DurationCapReached || rep.Server.Runs != 3 || rep.Server.Errors["timeout"] != 3 || rep.Direct.Runs != 0 {
		t.Errorf("report %+v", rep)
	}
}

func TestBenchConfig(t *testing.T) {
	c := Config{}.WithDefaults()
	if c.Streams != 100 || c.Direct != 50 || c.Tokens != 100 || c.Pace != 50*time.Millisecond || c.TTFT != 0 ||
		c.Ramp != time.Second || c.Endpoint != EndpointNative || c.RunsPerClient != 1 || c.Duration != DefaultDuration {
		t.Errorf("defaults %+v", c)
	}
	if c := (Config{Streams: 10, Direct: -1, Ramp: -1}).WithDefaults(); c.Direct != 0 || c.Ramp != 0 {
		t.Errorf("none: %+v", c)
	}
	if c := (Config{Streams: 10}).WithDefaults(); c.Direct != 10 {
		t.Errorf("direct for 10 streams: %d", c.Direct)
	}
	// The upstream: h2 with the simulator the bench runs, http1 with one
	// of the user's (it may not speak h2c), the server's own with a URL.
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, UpstreamH2},
		{Config{SimURL: "http://127.0.0.1:2/v1"}, UpstreamHTTP1},
		{Config{SimURL: "http://127.0.0.1:2/v1", Upstream: UpstreamH2}, UpstreamH2},
		{Config{Upstream: UpstreamHTTP1}, UpstreamHTTP1},
		{Config{URL: "http://127.0.0.1:1", SimURL: "http://127.0.0.1:2/v1"}, ""},
	} {
		c := tc.cfg.WithDefaults()
		if c.Upstream != tc.want {
			t.Errorf("%+v: upstream %q, want %q", tc.cfg, c.Upstream, tc.want)
		}
		if err := c.Validate(); err != nil {
			t.Errorf("%+v: %v", tc.cfg, err)
		}
	}
	// The relay answers both endpoints, over either upstream.
	for _, endpoint := range []string{EndpointNative, EndpointSeed} {
		for _, upstream := range []string{UpstreamH2, UpstreamHTTP1} {
			if err := (Config{Baseline: true, Endpoint: endpoint, Upstream: upstream}).WithDefaults().Validate(); err != nil {
				t.Errorf("the relay on %s over %s: %v", endpoint, upstream, err)
			}
		}
	}
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Endpoint: "grpc"}, "endpoint"},
		{Config{Upstream: "h3"}, `upstream "h3": want h2 or http1`},
		{Config{Upstream: "HTTP/1.1"}, `upstream "HTTP/1.1": want h2 or http1`},
		{Config{URL: "http://127.0.0.1:1", SimURL: "http://127.0.0.1:2/v1", Upstream: UpstreamH2}, "the upstream is that server's own"},
		{Config{Baseline: true, URL: "http://127.0.0.1:1", SimURL: "http://127.0.0.1:2/v1"}, "the baseline relay is started by the bench"},
		{Config{Baseline: true, Stalled: 1}, "without stalled clients"},
		{Config{URL: "http://example.com:8080"}, "not a loopback"},
		{Config{URL: "https://127.0.0.1:1"}, "http://"},
		{Config{URL: "http://127.0.0.1:1", SimURL: "http://10.0.0.1:1/v1"}, "not a loopback"},
		{Config{URL: "http://127.0.0.1:1"}, "simulator URL"},
	} {
		err := tc.cfg.WithDefaults().Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.cfg, err, tc.want)
		}
	}
	if err := (Config{URL: "http://localhost:1", SimURL: "http://[::1]:2/v1"}).WithDefaults().Validate(); err != nil {
		t.Errorf("loopback URLs: %v", err)
	}
}
