package bench

import (
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strings"
	"time"
)

// Report is the outcome of one Run; it is what --json writes.
// Durations are in milliseconds (fields ending _ms), sizes in bytes.
type Report struct {
	Settings Settings `json:"settings"`
	// StartedAt is when the clients started.
	StartedAt time.Time `json:"started_at"`
	// WindowS is the measured window in seconds: from the start of the
	// first client to the end of the last (stalled clients aside). Rates
	// and CPU figures are over it.
	WindowS float64 `json:"window_s"`
	// Stamps is whether the tokens carried their send time (the
	// simulator's stamp option): without, token latencies are empty.
	Stamps bool `json:"stamps"`
	// Server is the path through agentstream; Direct the clients that
	// called the simulator themselves, at the same time.
	Server Path `json:"server"`
	Direct Path `json:"direct"`
	// ServerMinusDirect is what the server adds: each percentile of the
	// server path less the same percentile of the direct path.
	ServerMinusDirect Diff `json:"server_minus_direct"`
	// Cross, with several instances, is the readers of the runs on
	// another instance than the run's (GET /v1/runs/{id}/events), one
	// per run; CrossMinusServer their token latency less the run's own
	// stream's, the delay the trip through Redis adds.
	Cross            *Path    `json:"cross,omitempty"`
	CrossMinusServer DistDiff `json:"cross_minus_server"`
	// Redis is what the instances' Redis did over the window
	// (Config.RedisURL).
	Redis   *RedisUse `json:"redis,omitempty"`
	Stalled *Stalled  `json:"stalled,omitempty"`
	// ServerProcess is measured from /proc when the server's pid is known
	// (a child started by Run, or Config.ServerPID).
	ServerProcess *Process `json:"server_process,omitempty"`
	// BenchProcess is this process: the clients and, unless
	// Config.SimURL is set, the simulator.
	BenchProcess *Process `json:"bench_process,omitempty"`
	// Machine is the whole machine over the window, to tell a loaded
	// machine's figures from a quiet one's.
	Machine *Machine `json:"machine,omitempty"`
	// DurationCapReached is set when Config.Duration (or the context)
	// ended the run before every client finished; the streams it cut
	// are counted as timeout errors.
	DurationCapReached bool `json:"duration_cap_reached"`
	// Soak is the memory over time of a soak (Config.Soak).
	Soak  *Soak    `json:"soak,omitempty"`
	Notes []string `json:"notes,omitempty"`
}

// Settings are the Config a Report was made with, defaults applied.
type Settings struct {
	Streams       int    `json:"streams"`
	RunsPerClient int    `json:"runs_per_client"`
	Endpoint      string `json:"endpoint"`
	// Upstream is how the server talked to the simulator (UpstreamH2,
	// UpstreamHTTP1); empty for a server the bench did not start.
	Upstream  string  `json:"upstream,omitempty"`
	Tokens    int     `json:"tokens"`
	PaceMS    float64 `json:"pace_ms"`
	TTFTMS    float64 `json:"ttft_ms"`
	RampMS    float64 `json:"ramp_ms"`
	Direct    int     `json:"direct"`
	Stalled   int     `json:"stalled"`
	DurationS float64 `json:"duration_cap_s"`
	ServerURL string  `json:"server_url"`
	// APIKey tells whether the requests to the server carried an API key.
	APIKey bool   `json:"api_key"`
	SimURL string `json:"sim_url"`
	// ServerChild is whether Run started the server as its child;
	// SimInProcess whether it ran the simulator itself.
	ServerChild  bool `json:"server_child"`
	SimInProcess bool `json:"sim_in_process"`
	// Baseline is whether the server was the bare relay (Relay), not
	// agentstream.
	Baseline bool `json:"baseline,omitempty"`
	// SoakS and Rate are a soak's length and arrivals per second (0: not
	// a soak).
	SoakS float64 `json:"soak_s,omitempty"`
	Rate  float64 `json:"rate_per_s,omitempty"`
	// Instances and InstanceURLs are the server children when there are
	// several (ServerURL is the first); RedisPrefix their Redis keys'.
	Instances    int      `json:"instances,omitempty"`
	InstanceURLs []string `json:"instance_urls,omitempty"`
	RedisPrefix  string   `json:"redis_prefix,omitempty"`
}

// Path is what the clients of one path measured.
type Path struct {
	Clients int `json:"clients"`
	// Runs is how many runs were attempted; Completed how many ended
	// with their success terminal event and at least one token.
	Runs      int `json:"runs"`
	Completed int `json:"completed"`
	// Errors counts the failed runs by kind: http_NNN (an error status),
	// connect (no answer), broken_stream (the stream failed mid-way),
	// missing_terminal (a clean end without the terminal event),
	// run.failed:CODE and the like (a failed terminal event), bad_event
	// (data that does not parse), no_tokens (success without a token),
	// timeout (cut by the duration cap), create_thread_… (the thread
	// could not be made).
	Errors     map[string]int `json:"errors"`
	ErrorCount int            `json:"error_count"`
	// MaxOpen is the most streams open at once that had received their
	// first byte: the streams the other end served concurrently.
	MaxOpen int `json:"max_open_streams"`
	// Tokens is how many tokens the clients received (stamps counted, or
	// deltas when unstamped); TokensPerS is over the report's window.
	Tokens     int64   `json:"tokens"`
	TokensPerS float64 `json:"tokens_per_s"`
	// TTFB is from sending the request to its headers and first body
	// byte; TTFT to the first token. For native runs, from the POST
	// that starts the run (the thread is made before).
	TTFB Dist `json:"ttfb_ms"`
	TTFT Dist `json:"ttft_ms"`
	// TokenLatency is, for every stamped token, its receipt time less
	// its stamp: the delay the path adds after the simulator sent it.
	TokenLatency Dist `json:"token_latency_ms"`
	// TokenGap is the time between consecutive deltas of a stream.
	TokenGap Dist `json:"token_gap_ms"`
	// CreateThread is the time of POST /v1/threads, the request before a
	// native run (server path, native endpoint only).
	CreateThread Dist `json:"create_thread_ms"`
}

// Dist is a distribution: its sample count and percentiles, in
// milliseconds, by the nearest-rank method on every sample (exact).
type Dist struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// Diff is, per distribution, server less direct.
type Diff struct {
	TTFB         DistDiff `json:"ttfb_ms"`
	TTFT         DistDiff `json:"ttft_ms"`
	TokenLatency DistDiff `json:"token_latency_ms"`
}

// DistDiff is the difference of two Dists' percentiles, in milliseconds;
// Valid is false when either has no sample.
type DistDiff struct {
	Valid bool    `json:"valid"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
}

// Stalled is what the stalled clients did: opened streams and held them
// unread until the other clients were done.
type Stalled struct {
	Clients    int            `json:"clients"`
	Opened     int            `json:"opened"`
	Errors     map[string]int `json:"errors"`
	ErrorCount int            `json:"error_count"`
}

// Process is one process's CPU and memory over the window, from
// /proc/PID/stat and /proc/PID/status.
type Process struct {
	PID int `json:"pid"`
	// CPUS is user plus system CPU time over the window, in seconds;
	// CPUPercent is that over the window (100 is one core busy).
	CPUS       float64 `json:"cpu_s"`
	CPUUserS   float64 `json:"cpu_user_s"`
	CPUSystemS float64 `json:"cpu_system_s"`
	CPUPercent float64 `json:"cpu_percent"`
	// CPUPerTokenUS is CPUS over the tokens delivered on the server
	// path, in microseconds.
	CPUPerTokenUS float64 `json:"cpu_per_token_us"`
	// CPUPerRunMS is CPUS over the runs completed on the server path, in
	// milliseconds: with short replies, what a run costs apart from its
	// tokens shows here (0 when no run completed).
	CPUPerRunMS float64 `json:"cpu_per_run_ms"`
	// RSSBefore is the resident set before the load; RSSPeak the highest
	// sampled (every 100ms); RSSAtPeakOpen the one sampled when the most
	// streams were open, OpenAtPeak of them.
	RSSBefore     int64 `json:"rss_before_bytes"`
	RSSPeak       int64 `json:"rss_peak_bytes"`
	RSSAtPeakOpen int64 `json:"rss_at_peak_open_bytes"`
	OpenAtPeak    int   `json:"open_streams_at_peak"`
	// MemoryPerStream is (RSSAtPeakOpen − RSSBefore) ÷ OpenAtPeak.
	MemoryPerStream float64 `json:"memory_per_stream_bytes"`
	// ExitStatus is a child server's exit status after SIGTERM (-1 when
	// it had to be killed).
	ExitStatus *int `json:"exit_status,omitempty"`
}

// Machine is the machine the run measured.
type Machine struct {
	CPUs int `json:"cpus"`
	// BusyPercent is the share of all cores' time that was busy over the
	// window, by every process (100: all cores busy all the time).
	BusyPercent float64 `json:"cpu_busy_percent"`
}

// percentile returns the p-th percentile (0 < p ≤ 100) of sorted by the
// nearest-rank method: the smallest sample with at least p% of the
// samples at or below it. It returns 0 for no samples.
func percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(n)))
	return sorted[min(max(rank, 1), n)-1]
}

// newDist sorts samples in place and returns their distribution.
func newDist(samples []time.Duration) Dist {
	slices.Sort(samples)
	return Dist{
		N:   len(samples),
		P50: ms(percentile(samples, 50)),
		P90: ms(percentile(samples, 90)),
		P99: ms(percentile(samples, 99)),
		Max: ms(percentile(samples, 100)),
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func diff(a, b Dist) DistDiff {
	if a.N == 0 || b.N == 0 {
		return DistDiff{}
	}
	return DistDiff{Valid: true, P50: a.P50 - b.P50, P90: a.P90 - b.P90, P99: a.P99 - b.P99, Max: a.Max - b.Max}
}

// perStream is (atPeak − before) ÷ open, 0 when nothing was open.
func perStream(before, atPeak int64, open int) float64 {
	if open <= 0 {
		return 0
	}
	return float64(atPeak-before) / float64(open)
}

// upstreamText says how the server talked to the simulator, for the
// tables: nothing when the bench did not start the server.
func upstreamText(upstream string) string {
	switch upstream {
	case UpstreamH2:
		return " over HTTP/2 without TLS (upstream h2)"
	case UpstreamHTTP1:
		return " over HTTP/1.1, a connection per stream (upstream http1)"
	}
	return ""
}

// WriteTable writes the report as text tables.
func (r *Report) WriteTable(w io.Writer) error {
	s := r.Settings
	var b strings.Builder
	ttft := "none"
	if s.TTFTMS > 0 {
		ttft = fmtMS(s.TTFTMS)
	}
	rate := ""
	if s.PaceMS > 0 {
		rate = fmt.Sprintf(" (%.4g tokens/s)", 1000/s.PaceMS)
	}
	if s.SoakS > 0 {
		fmt.Fprintf(&b, "agentstream bench: a soak of %gs, %.4g new runs/s on %s, %d tokens every %s%s, TTFT %s\n",
			s.SoakS, s.Rate, s.Endpoint, s.Tokens, fmtMS(s.PaceMS), rate, ttft)
	} else {
		fmt.Fprintf(&b, "agentstream bench: %d streams × %d run(s) on %s, %d tokens every %s%s, TTFT %s, ramp %s\n",
			s.Streams, s.RunsPerClient, s.Endpoint, s.Tokens, fmtMS(s.PaceMS), rate, ttft, fmtMS(s.RampMS))
	}
	if s.APIKey {
		b.WriteString("every request to the server carries an API key (Authorization: Bearer)\n")
	}
	server := "server"
	if s.Baseline {
		server = "server (the baseline relay, not agentstream)"
	}
	fmt.Fprintf(&b, "%s %s, simulator %s%s; %d direct clients, %d stalled; window %.2fs",
		server, s.ServerURL, s.SimURL, upstreamText(s.Upstream), s.Direct, s.Stalled, r.WindowS)
	if r.DurationCapReached {
		fmt.Fprintf(&b, " (cut by the %gs duration cap)", s.DurationS)
	}
	b.WriteString("\n")
	if !r.Stamps {
		b.WriteString("tokens carried no stamps: no per-token latency\n")
	}
	b.WriteString("\n")

	const row = "%-24s %-14s %9s %9s %9s %9s %9s\n"
	fmt.Fprintf(&b, row, "latency (ms)", "path", "p50", "p90", "p99", "max", "samples")
	for _, d := range []struct {
		name        string
		server, dir Dist
		diff        DistDiff
	}{
		{"time to first byte", r.Server.TTFB, r.Direct.TTFB, r.ServerMinusDirect.TTFB},
		{"time to first token", r.Server.TTFT, r.Direct.TTFT, r.ServerMinusDirect.TTFT},
		{"added latency per token", r.Server.TokenLatency, r.Direct.TokenLatency, r.ServerMinusDirect.TokenLatency},
		{"gap between tokens", r.Server.TokenGap, r.Direct.TokenGap, DistDiff{}},
	} {
		fmt.Fprintf(&b, row, append([]any{d.name, "server"}, distCells(d.server)...)...)
		fmt.Fprintf(&b, row, append([]any{"", "direct"}, distCells(d.dir)...)...)
		if d.diff.Valid {
			fmt.Fprintf(&b, row, "", "server−direct", f2(d.diff.P50), f2(d.diff.P90), f2(d.diff.P99), f2(d.diff.Max), "")
		}
	}
	if r.Server.CreateThread.N > 0 {
		fmt.Fprintf(&b, row, append([]any{"create thread (POST)", "server"}, distCells(r.Server.CreateThread)...)...)
	}
	if c := r.Cross; c != nil {
		fmt.Fprintf(&b, row, append([]any{"added latency per token", "other instance"}, distCells(c.TokenLatency)...)...)
		if d := r.CrossMinusServer; d.Valid {
			fmt.Fprintf(&b, row, "", "other−same", f2(d.P50), f2(d.P90), f2(d.P99), f2(d.Max), "")
		}
		fmt.Fprintf(&b, row, append([]any{"time to first token", "other instance"}, distCells(c.TTFT)...)...)
	}
	b.WriteString("\n")
	if s.Instances > 1 {
		fmt.Fprintf(&b, "%d instances (%s) sharing PostgreSQL and Redis (prefix %q): runs start on one, the other-instance reader reads from the next\n",
			s.Instances, strings.Join(s.InstanceURLs, ", "), s.RedisPrefix)
	}
	if c := r.Cross; c != nil {
		fmt.Fprintf(&b, "other-instance readers: %d/%d completed, %d tokens", c.Completed, c.Runs, c.Tokens)
		if len(c.Errors) > 0 {
			fmt.Fprintf(&b, "; errors: %s", fmtErrors(c.Errors))
		}
		b.WriteString("\n")
	}
	if u := r.Redis; u != nil {
		fmt.Fprintf(&b, "redis: %d commands (%.1f per completed run), %s in (%s per run), %s out (%s per run), memory %s → %s (%s per run)\n",
			u.Commands, u.CommandsPerRun, fmtBytes(float64(u.InputBytes)), fmtBytes(u.InputBytesPerRun),
			fmtBytes(float64(u.OutputBytes)), fmtBytes(u.OutputBytesPerRun),
			fmtBytes(float64(u.MemoryBefore)), fmtBytes(float64(u.MemoryAfter)), fmtBytes(u.MemoryPerRun))
		fmt.Fprintf(&b, "  by command: %s\n", fmtCalls(u.Calls, u.Runs))
	}
	if s.Instances > 1 || r.Redis != nil {
		b.WriteString("\n")
	}

	const row2 = "%-24s %14s %14s\n"
	fmt.Fprintf(&b, row2, "", "server", "direct")
	fmt.Fprintf(&b, row2, "clients", fmt.Sprint(r.Server.Clients), fmt.Sprint(r.Direct.Clients))
	fmt.Fprintf(&b, row2, "runs completed", fmt.Sprintf("%d/%d", r.Server.Completed, r.Server.Runs),
		fmt.Sprintf("%d/%d", r.Direct.Completed, r.Direct.Runs))
	fmt.Fprintf(&b, row2, "errors", fmt.Sprint(r.Server.ErrorCount), fmt.Sprint(r.Direct.ErrorCount))
	fmt.Fprintf(&b, row2, "streams served at once", fmt.Sprint(r.Server.MaxOpen), fmt.Sprint(r.Direct.MaxOpen))
	fmt.Fprintf(&b, row2, "tokens", fmt.Sprint(r.Server.Tokens), fmt.Sprint(r.Direct.Tokens))
	fmt.Fprintf(&b, row2, "tokens/s", fmt.Sprintf("%.1f", r.Server.TokensPerS), fmt.Sprintf("%.1f", r.Direct.TokensPerS))
	for _, p := range []struct {
		name string
		errs map[string]int
	}{{"server", r.Server.Errors}, {"direct", r.Direct.Errors}} {
		if len(p.errs) > 0 {
			fmt.Fprintf(&b, "%s errors: %s\n", p.name, fmtErrors(p.errs))
		}
	}
	b.WriteString("\n")

	if r.Soak != nil {
		writeSoak(&b, r.Soak)
	}
	if st := r.Stalled; st != nil {
		fmt.Fprintf(&b, "stalled clients: %d opened of %d, held unread to the end", st.Opened, st.Clients)
		if st.ErrorCount > 0 {
			fmt.Fprintf(&b, "; errors: %s", fmtErrors(st.Errors))
		}
		b.WriteString("\n")
	}
	if p := r.ServerProcess; p != nil {
		fmt.Fprintf(&b, "server process (pid %d): CPU %.2fs over the window (user %.2fs, system %.2fs; %.0f%% of a core), %.1f µs/token, %.2f ms/run\n",
			p.PID, p.CPUS, p.CPUUserS, p.CPUSystemS, p.CPUPercent, p.CPUPerTokenUS, p.CPUPerRunMS)
		fmt.Fprintf(&b, "  memory: RSS %s before the load, %s at %d open streams (peak %s): %s per open stream\n",
			fmtBytes(float64(p.RSSBefore)), fmtBytes(float64(p.RSSAtPeakOpen)), p.OpenAtPeak, fmtBytes(float64(p.RSSPeak)),
			fmtBytes(p.MemoryPerStream))
		if p.ExitStatus != nil {
			fmt.Fprintf(&b, "  exit status after SIGTERM: %d\n", *p.ExitStatus)
		}
	} else {
		b.WriteString("server process: not measured (no pid)\n")
	}
	if p := r.BenchProcess; p != nil {
		what := "clients and simulator"
		if !s.SimInProcess {
			what = "clients"
		}
		fmt.Fprintf(&b, "bench process (%s, pid %d): CPU %.2fs (user %.2fs, system %.2fs; %.0f%% of a core), %.1f µs per server-path token; RSS peak %s\n",
			what, p.PID, p.CPUS, p.CPUUserS, p.CPUSystemS, p.CPUPercent, p.CPUPerTokenUS, fmtBytes(float64(p.RSSPeak)))
	}
	if m := r.Machine; m != nil {
		fmt.Fprintf(&b, "machine: %d CPUs, %.0f%% busy over the window (all processes)\n", m.CPUs, m.BusyPercent)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// fmtCalls lists command counts, most first, with their count per run.
func fmtCalls(calls map[string]int64, runs int) string {
	names := make([]string, 0, len(calls))
	for n := range calls {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		if calls[names[i]] != calls[names[j]] {
			return calls[names[i]] > calls[names[j]]
		}
		return names[i] < names[j]
	})
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = fmt.Sprintf("%s %d", n, calls[n])
		if runs > 0 {
			parts[i] += fmt.Sprintf(" (%.1f/run)", float64(calls[n])/float64(runs))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func distCells(d Dist) []any {
	if d.N == 0 {
		return []any{"-", "-", "-", "-", "0"}
	}
	return []any{f2(d.P50), f2(d.P90), f2(d.P99), f2(d.Max), fmt.Sprint(d.N)}
}

func f2(v float64) string { return fmt.Sprintf("%.2f", v) }

func fmtErrors(m map[string]int) string {
	kinds := make([]string, 0, len(m))
	for k := range m {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	parts := make([]string, len(kinds))
	for i, k := range kinds {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

func fmtMS(v float64) string {
	return (time.Duration(v * float64(time.Millisecond))).String()
}

func fmtBytes(v float64) string {
	neg := v < 0
	if neg {
		v = -v
	}
	var s string
	switch {
	case v >= 1<<30:
		s = fmt.Sprintf("%.2f GiB", v/(1<<30))
	case v >= 1<<20:
		s = fmt.Sprintf("%.1f MiB", v/(1<<20))
	case v >= 1<<10:
		s = fmt.Sprintf("%.1f KiB", v/(1<<10))
	default:
		s = fmt.Sprintf("%.0f B", v)
	}
	if neg {
		s = "-" + s
	}
	return s
}
