//go:build unix

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentstream/agentstream/bench"
	"github.com/agentstream/agentstream/internal/testenv"
	"github.com/redis/go-redis/v9"
)

// benchTimeout bounds one `agentstream bench` process; it takes a few
// seconds.
const benchTimeout = 2 * time.Minute

// runBench runs `agentstream bench` with args as a separate process (so
// the server it starts, its child, is measured for real) and returns the
// report it wrote.
func runBench(t *testing.T, args ...string) (bench.Report, string) {
	t.Helper()
	var rep bench.Report
	stdout := benchProcess(t, &rep, args...)
	if !strings.Contains(stdout, "time to first token") {
		t.Errorf("stdout:\n%s", stdout)
	}
	return rep, stdout
}

// benchProcess runs `agentstream bench` with args, decodes the JSON it
// wrote into out (strictly: no field unknown to out's type) and returns
// its stdout.
func benchProcess(t *testing.T, out any, args ...string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "out.json")
	ctx, cancel := context.WithTimeout(context.Background(), benchTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, agentstreamBinary(t), append(append([]string{"bench"}, args...), "--json", file)...)
	cmd.Dir = t.TempDir()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	began := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("agentstream bench %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	t.Logf("agentstream bench %s took %s:\n%s", strings.Join(args, " "), time.Since(began).Round(time.Millisecond), stdout.String())
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(out); err != nil {
		t.Fatalf("the report is not well-formed: %v\n%s", err, data)
	}
	if !strings.Contains(stderr.String(), "bench: server http://127.0.0.1:") {
		t.Errorf("stderr:\n%s", stderr.String())
	}
	return stdout.String()
}

// checkReport checks a report of a clean run of streams clients.
func checkReport(t *testing.T, rep bench.Report, streams, tokens int) {
	t.Helper()
	// The child has an API key (auth.keys), so a request without it would
	// be a 401, counted among the errors checked below.
	if rep.Settings.Streams != streams || !rep.Settings.ServerChild || !rep.Settings.SimInProcess || !rep.Stamps || rep.DurationCapReached || !rep.Settings.APIKey {
		t.Errorf("settings %+v, stamps %v, cap reached %v", rep.Settings, rep.Stamps, rep.DurationCapReached)
	}
	direct := min(streams, 50)
	for _, p := range []struct {
		name    string
		path    bench.Path
		clients int
	}{{"server", rep.Server, streams}, {"direct", rep.Direct, direct}} {
		path := p.path
		if path.Clients != p.clients || path.Runs != p.clients || path.Completed != p.clients || path.ErrorCount != 0 || len(path.Errors) != 0 {
			t.Errorf("%s path: %d clients, %d runs, %d completed, errors %v; want %d completed, none failed",
				p.name, path.Clients, path.Runs, path.Completed, path.Errors, p.clients)
		}
		if path.Tokens != int64(p.clients*tokens) || path.TokensPerS <= 0 || path.MaxOpen < 1 || path.MaxOpen > p.clients {
			t.Errorf("%s path: %d tokens (want %d), %g tokens/s, %d open at most", p.name, path.Tokens, p.clients*tokens, path.TokensPerS, path.MaxOpen)
		}
		for _, d := range []struct {
			name string
			dist bench.Dist
			n    int
		}{
			{"ttfb", path.TTFB, p.clients},
			{"ttft", path.TTFT, p.clients},
			{"token latency", path.TokenLatency, p.clients * tokens},
			{"token gap", path.TokenGap, p.clients * (tokens - 1)},
		} {
			if x := d.dist; x.N != d.n || x.P50 < 0 || x.P50 > x.P90 || x.P90 > x.P99 || x.P99 > x.Max || x.Max <= 0 {
				t.Errorf("%s path, %s: %+v; want %d samples, 0 ≤ p50 ≤ p90 ≤ p99 ≤ max", p.name, d.name, x, d.n)
			}
		}
	}
	if d := rep.ServerMinusDirect; !d.TTFB.Valid || !d.TTFT.Valid || !d.TokenLatency.Valid {
		t.Errorf("server−direct %+v", d)
	}
	sp := rep.ServerProcess
	if sp == nil || sp.PID <= 0 || sp.CPUS <= 0 || sp.CPUPerTokenUS <= 0 || sp.CPUPerRunMS <= 0 || sp.RSSBefore <= 0 || sp.RSSPeak < sp.RSSBefore ||
		sp.RSSAtPeakOpen <= 0 || sp.OpenAtPeak <= 0 || sp.ExitStatus == nil || *sp.ExitStatus != 0 {
		t.Errorf("server process %+v", sp)
	}
	if bp := rep.BenchProcess; bp == nil || bp.CPUS <= 0 || bp.RSSPeak <= 0 {
		t.Errorf("bench process %+v", bp)
	}
	if rep.WindowS <= 0 || len(rep.Notes) != 0 {
		t.Errorf("window %gs, notes %q", rep.WindowS, rep.Notes)
	}
}

func TestBenchNative(t *testing.T) {
	t.Parallel()
	rep, _ := runBench(t, "--streams", "50", "--tokens", "20", "--pace", "20ms", "--ramp", "200ms")
	checkReport(t, rep, 50, 20)
	if ct := rep.Server.CreateThread; rep.Settings.Endpoint != bench.EndpointNative || ct.N != 50 || ct.P50 <= 0 || ct.P50 > ct.Max {
		t.Errorf("endpoint %q, thread creation %+v", rep.Settings.Endpoint, ct)
	}
}

// TestBenchBaseline loads the bare relay instead of agentstream: the same
// report, marked as the baseline.
func TestBenchBaseline(t *testing.T) {
	t.Parallel()
	rep, table := runBench(t, "--baseline", "--streams", "50", "--tokens", "20", "--pace", "20ms", "--ramp", "200ms")
	checkReport(t, rep, 50, 20)
	if !rep.Settings.Baseline || !strings.Contains(table, "the baseline relay, not agentstream") {
		t.Errorf("baseline %v, table:\n%s", rep.Settings.Baseline, table)
	}
}

// TestBenchCompare runs agentstream and the bare relay in turn, in one
// command, and reports both side by side.
func TestBenchCompare(t *testing.T) {
	t.Parallel()
	var c bench.Comparison
	table := benchProcess(t, &c, "--compare", "2", "--streams", "50", "--tokens", "20", "--pace", "20ms", "--ramp", "200ms")
	if c.Rounds != 2 || len(c.Agentstream) != 2 || len(c.Baseline) != 2 || len(c.Notes) != 0 {
		t.Fatalf("%d rounds, %d and %d reports, notes %q", c.Rounds, len(c.Agentstream), len(c.Baseline), c.Notes)
	}
	for i := range 2 {
		checkReport(t, c.Agentstream[i], 50, 20)
		checkReport(t, c.Baseline[i], 50, 20)
		if c.Agentstream[i].Settings.Baseline || !c.Baseline[i].Settings.Baseline {
			t.Errorf("round %d: the agentstream report says baseline %v, the relay's %v", i, c.Agentstream[i].Settings.Baseline, c.Baseline[i].Settings.Baseline)
		}
		// Alternating: each relay run starts after the agentstream run
		// before it.
		if !c.Baseline[i].StartedAt.After(c.Agentstream[i].StartedAt) || (i > 0 && !c.Agentstream[i].StartedAt.After(c.Baseline[i-1].StartedAt)) {
			t.Errorf("round %d did not alternate: agentstream at %v, relay at %v", i, c.Agentstream[i].StartedAt, c.Baseline[i].StartedAt)
		}
	}
	figs := map[string]bench.Figure{}
	for _, f := range c.Figures {
		figs[f.Name] = f
		if !strings.Contains(table, f.Name) {
			t.Errorf("the table lacks %q:\n%s", f.Name, table)
		}
	}
	cpu, ok := figs["server CPU per token"]
	if !ok || len(cpu.Agentstream) != 2 || cpu.Agentstream[1] != c.Agentstream[1].ServerProcess.CPUPerTokenUS ||
		cpu.Baseline[0] != c.Baseline[0].ServerProcess.CPUPerTokenUS || cpu.Ratio <= 0 {
		t.Errorf("CPU figure %+v", cpu)
	}
	// Per run: the server's CPU over the runs it completed.
	perRun, ok := figs["server CPU per run"]
	if sp := c.Baseline[1].ServerProcess; !ok || len(perRun.Baseline) != 2 || perRun.Baseline[1] != sp.CPUPerRunMS ||
		math.Abs(sp.CPUPerRunMS-sp.CPUS*1000/float64(c.Baseline[1].Server.Completed)) > 0.01 || perRun.Ratio <= 0 {
		t.Errorf("per-run figure %+v, relay's process %+v", perRun, sp)
	}
	if f := figs["streams served at once"]; f.AgentstreamMedian < 1 || f.BaselineMedian < 1 || f.Ratio != 0 {
		t.Errorf("streams figure %+v", f)
	}
	if len(c.Figures) != 10 || !strings.Contains(table, "2 round(s)") || !strings.Contains(table, "on native, upstream h2") ||
		c.Endpoint != bench.EndpointNative || c.Upstream != bench.UpstreamH2 {
		t.Errorf("%d figures, endpoint %q, upstream %q, table:\n%s", len(c.Figures), c.Endpoint, c.Upstream, table)
	}
}

// TestBenchCompareMatrix: one small round of --compare on each endpoint
// over each upstream; both servers serve every stream, the reports say
// which endpoint and upstream they ran, and every figure is measured for
// both. The runs last a few of the bench's 100 ms memory samples, so that
// memory per open stream is measured; CPU, read in clock ticks, may be 0
// in runs this small.
func TestBenchCompareMatrix(t *testing.T) {
	t.Parallel()
	const streams, tokens = 3, 5
	for _, endpoint := range []string{bench.EndpointNative, bench.EndpointSeed} {
		for _, upstream := range []string{bench.UpstreamH2, bench.UpstreamHTTP1} {
			t.Run(endpoint+"/"+upstream, func(t *testing.T) {
				t.Parallel()
				var c bench.Comparison
				table := benchProcess(t, &c, "--compare", "1", "--endpoint", endpoint, "--upstream", upstream,
					"--streams", fmt.Sprint(streams), "--tokens", fmt.Sprint(tokens), "--pace", "40ms", "--ramp", "0")
				if c.Rounds != 1 || len(c.Agentstream) != 1 || len(c.Baseline) != 1 || len(c.Notes) != 0 {
					t.Fatalf("%d rounds, %d and %d reports, notes %q", c.Rounds, len(c.Agentstream), len(c.Baseline), c.Notes)
				}
				if c.Endpoint != endpoint || c.Upstream != upstream || !strings.Contains(table, "on "+endpoint+", upstream "+upstream) {
					t.Errorf("endpoint %q, upstream %q; table:\n%s", c.Endpoint, c.Upstream, table)
				}
				for _, rep := range []bench.Report{c.Agentstream[0], c.Baseline[0]} {
					s, p := rep.Settings, rep.Server
					if s.Endpoint != endpoint || s.Upstream != upstream || p.Completed != streams || p.ErrorCount != 0 ||
						p.Tokens != streams*tokens || p.TTFT.N != streams || p.TokenLatency.N != streams*tokens {
						t.Errorf("baseline %v: settings %+v, server path %+v", s.Baseline, s, p)
					}
					if sp := rep.ServerProcess; sp == nil || sp.RSSAtPeakOpen <= 0 || sp.OpenAtPeak < 1 {
						t.Errorf("baseline %v: server process %+v", s.Baseline, sp)
					}
				}
				// Every figure, none left out for a run that lacks it.
				if len(c.Figures) != 10 {
					t.Errorf("%d figures; table:\n%s", len(c.Figures), table)
				}
				for _, f := range c.Figures {
					if f.Name == "streams served at once" && (f.AgentstreamMedian < 1 || f.BaselineMedian < 1) {
						t.Errorf("%s: %+v", f.Name, f)
					}
				}
			})
		}
	}
}

// TestBenchCompareInterrupted ends a comparison in its second round: it
// returns the first, with a note, and no error.
func TestBenchCompareInterrupted(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The third server line is the second round's agentstream run, its
	// load about to start.
	progress := &cancelAt{cancel: cancel, marker: "bench: server http://", at: 3}
	cfg := bench.Config{Streams: 20, Tokens: 20, Pace: 20 * time.Millisecond, Ramp: 100 * time.Millisecond, ServerBin: agentstreamBinary(t)}
	c, err := bench.Compare(ctx, cfg, 2, progress)
	if err != nil {
		t.Fatalf("Compare: %v\nprogress:\n%s", err, progress.String())
	}
	if c.Rounds != 1 || len(c.Baseline) != 1 || len(c.Agentstream) != 2 || len(c.Figures) == 0 {
		t.Fatalf("%d rounds, %d and %d reports, %d figures", c.Rounds, len(c.Agentstream), len(c.Baseline), len(c.Figures))
	}
	for _, f := range c.Figures {
		if len(f.Agentstream) != 1 || len(f.Baseline) != 1 {
			t.Errorf("figure %q is of %d and %d runs, want the one complete round", f.Name, len(f.Agentstream), len(f.Baseline))
		}
	}
	notes := strings.Join(c.Notes, "\n")
	if !strings.Contains(notes, "interrupted in round 2 of 2: the figures are of the 1 round(s) completed") ||
		!strings.Contains(notes, "round 2, agentstream: interrupted before every client was done") {
		t.Errorf("notes:\n%s", notes)
	}
}

// cancelAt is a progress writer that cancels when marker has been
// written at times.
type cancelAt struct {
	cancel context.CancelFunc
	marker string
	at     int

	mu   sync.Mutex
	buf  strings.Builder
	seen int
}

func (w *cancelAt) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.seen += strings.Count(string(p), w.marker); w.seen >= w.at {
		w.cancel()
	}
	return w.buf.Write(p)
}

func (w *cancelAt) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func TestBenchSeed(t *testing.T) {
	t.Parallel()
	rep, table := runBench(t, "--streams", "50", "--tokens", "20", "--pace", "20ms", "--ramp", "200ms", "--endpoint", "seed", "--stalled", "3")
	checkReport(t, rep, 50, 20)
	if rep.Settings.Endpoint != bench.EndpointSeed || rep.Stalled == nil || rep.Stalled.Opened != 3 || rep.Stalled.ErrorCount != 0 {
		t.Errorf("endpoint %q, stalled %+v", rep.Settings.Endpoint, rep.Stalled)
	}
	if !strings.Contains(table, "stalled clients: 3 opened of 3") {
		t.Errorf("table:\n%s", table)
	}
}

// TestBenchSoak: a short soak through a real server child: runs arrive at
// the rate asked, each a new conversation, and the server's memory is
// sampled throughout and once after.
func TestBenchSoak(t *testing.T) {
	t.Parallel()
	var rep bench.Report
	table := benchProcess(t, &rep, "--soak", "3s", "--rate", "10", "--tokens", "3", "--pace", "20ms", "--soak-sample", "500ms")
	s := rep.Soak
	if s == nil {
		t.Fatalf("no soak in the report:\n%s", table)
	}
	if s.Launched != 30 || rep.Server.Runs != 30 || rep.Server.Completed != 30 || rep.Server.Tokens != 90 || rep.Direct.Runs != 0 ||
		s.Rate != 10 || s.DurationS != 3 || s.SampleEveryS != 0.5 {
		t.Errorf("soak %+v; server path %+v", s, rep.Server)
	}
	if n := len(s.Samples); n < 6 || !s.Samples[n-1].After || s.Samples[n-1].Done != 30 || !s.PlateauKnown || s.RSSMax <= 0 {
		t.Errorf("samples %+v", s.Samples)
	}
	for i, x := range s.Samples {
		if x.RSS <= 0 {
			t.Errorf("sample %d: no RSS: %+v", i, x)
		}
	}
	for _, want := range []string{"soak: 30 runs arrived over 3s (10/s)", "plateau: "} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
}

func TestBenchFlags(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--endpoint", "grpc"}, `endpoint "grpc"`},
		{[]string{"--url", "http://192.0.2.1:8080"}, "not a loopback address"},
		{[]string{"--streams", "0"}, "must be positive"},
		{[]string{"--bogus"}, "flag provided but not defined"},
		{[]string{"extra"}, `unexpected argument "extra"`},
		{[]string{"--upstream", "h3"}, `upstream "h3": want h2 or http1`},
		{[]string{"--upstream", "HTTP1"}, `upstream "HTTP1": want h2 or http1`},
		{[]string{"--upstream", "http1", "--url", "http://127.0.0.1:1", "--sim-url", "http://127.0.0.1:2/v1"}, "with a server URL, the upstream is that server's own"},
		{[]string{"--baseline", "--stalled", "1"}, "the baseline relay is started by the bench (no server URL), without stalled clients"},
		{[]string{"--baseline", "--url", "http://127.0.0.1:1", "--sim-url", "http://127.0.0.1:2/v1"}, "the baseline relay is started by the bench"},
		{[]string{"--compare", "-1"}, "--compare must not be negative"},
		{[]string{"--compare", "1", "--baseline"}, "--compare runs the baseline relay itself: drop --baseline"},
		{[]string{"--compare", "1", "--endpoint", "seed", "--upstream", "h1"}, `--compare runs the baseline relay too: upstream "h1": want h2 or http1`},
		{[]string{"--compare", "1", "--url", "http://127.0.0.1:1", "--sim-url", "http://127.0.0.1:2/v1"}, "--compare runs the baseline relay too"},
		{[]string{"--compare", "1", "--stalled", "2"}, "--compare runs the baseline relay too"},
		{[]string{"--rate", "5"}, "a soak needs a positive duration, and a rate (runs per second) only with a soak"},
		{[]string{"--soak", "10s", "--rate", "-1"}, "a soak needs a positive duration"},
		{[]string{"--soak", "10s", "--stalled", "1"}, "a soak runs without stalled clients or the baseline relay"},
		{[]string{"--soak", "10s", "--compare", "1"}, "--compare runs the baseline relay too: a soak runs without"},
		{[]string{"relay"}, "give --model-url"},
		{[]string{"relay", "--model-url", "http://127.0.0.1:1/v1", "x"}, "give --model-url, and no arguments"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), func() {}, append([]string{"bench"}, tc.args...), env(nil), &stdout, &stderr)
		if code != 2 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("bench %q: exit %d, %q; want exit 2 and %q", tc.args, code, stderr.String(), tc.want)
		}
	}
}

// TestBenchInstances: two instances sharing a PostgreSQL schema and a
// Redis prefix; every run is read on the other instance too, in full,
// with its token latencies; Redis's work is reported; the bench's Redis
// keys are gone at the end.
func TestBenchInstances(t *testing.T) {
	t.Parallel()
	redisURL := testenv.RedisURL(t)
	_, dbURL := testenv.PostgresSchema(t)
	prefix := testenv.RedisPrefixCleaned(t, redisURL)
	const streams, tokens = 6, 20
	rep, table := runBench(t, "--instances", "2", "--database-url", dbURL, "--redis-url", redisURL, "--redis-prefix", prefix,
		"--streams", fmt.Sprint(streams), "--tokens", fmt.Sprint(tokens), "--pace", "20ms", "--ramp", "200ms")
	checkReport(t, rep, streams, tokens)
	s := rep.Settings
	if s.Instances != 2 || len(s.InstanceURLs) != 2 || s.InstanceURLs[0] == s.InstanceURLs[1] || s.InstanceURLs[0] != s.ServerURL || s.RedisPrefix != prefix {
		t.Errorf("settings %+v", s)
	}
	c := rep.Cross
	if c == nil {
		t.Fatalf("no other-instance readers in the report:\n%s", table)
	}
	if c.Runs != streams || c.Completed != streams || c.ErrorCount != 0 || c.Tokens != streams*tokens ||
		c.TokenLatency.N != streams*tokens || c.TokenLatency.P50 < 0 || c.TokenLatency.P50 > c.TokenLatency.Max {
		t.Errorf("other-instance readers %+v", *c)
	}
	if !rep.CrossMinusServer.Valid || !strings.Contains(table, "other instance") {
		t.Errorf("other−same %+v; table:\n%s", rep.CrossMinusServer, table)
	}
	// The shared Redis may serve other tests meanwhile: figures at
	// least the bench's own.
	r := rep.Redis
	if r == nil || r.Runs != streams || r.Commands < int64(streams) || r.CommandsPerRun < 1 || r.InputBytesPerRun <= 0 || r.Calls["evalsha"]+r.Calls["eval"] == 0 {
		t.Errorf("redis use %+v", r)
	}
	opts, err := redis.ParseURL(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	client := redis.NewClient(opts)
	defer func() { _ = client.Close() }()
	keys, err := client.Keys(context.Background(), prefix+"*").Result()
	if err != nil || len(keys) != 0 {
		t.Errorf("keys left under the bench's prefix: %q (%v)", keys, err)
	}
}

// TestBenchInstancesFlags: several instances need both shared stores, on
// this machine, and the native endpoint.
func TestBenchInstancesFlags(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"--instances", "2"},
		{"--instances", "2", "--database-url", "postgres://127.0.0.1/x"},
		{"--instances", "2", "--redis-url", "redis://127.0.0.1:6379/0"},
		{"--instances", "0"},
		{"--instances", "2", "--database-url", "postgres://db.example.com/x", "--redis-url", "redis://127.0.0.1:6379/0"},
		{"--instances", "2", "--database-url", "postgres://127.0.0.1/x", "--redis-url", "redis://10.0.0.1:6379/0"},
		{"--database-url", "mysql://127.0.0.1/x"},
		{"--instances", "2", "--database-url", "postgres://127.0.0.1/x", "--redis-url", "redis://127.0.0.1:6379/0", "--endpoint", "seed"},
		{"--instances", "2", "--database-url", "postgres://127.0.0.1/x", "--redis-url", "redis://127.0.0.1:6379/0", "--baseline"},
		{"--redis-url", "redis://127.0.0.1:6379/0", "--redis-prefix", "a{b}:"},
	} {
		var stderr bytes.Buffer
		if code := benchmark(context.Background(), args, io.Discard, &stderr); code != 2 {
			t.Errorf("%q: exit %d, want 2; stderr %s", args, code, stderr.String())
		} else if stderr.Len() == 0 {
			t.Errorf("%q: no message", args)
		}
	}
}
