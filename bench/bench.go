// Package bench is agentstream's load generator, the logic of
// `agentstream bench`: it runs the simulated model (with stamped tokens)
// and an `agentstream serve` child against it, opens many concurrent
// streaming clients over real HTTP on loopback, and measures what each
// client sees — time to first byte and token, the delay the server adds to
// every token, the gaps between tokens, errors — next to a few direct
// clients of the simulator, the lower bound, and the server process's CPU
// and memory.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentstream/agentstream/sim"
)

// Endpoints a run can stream from.
const (
	EndpointNative = "native" // POST /v1/threads, then POST /v1/threads/{id}/runs
	EndpointSeed   = "seed"   // POST /v1/chat
)

// Upstreams: how the server the bench starts (agentstream or the relay)
// talks to the simulator.
const (
	// UpstreamH2 is HTTP/2 without TLS (h2c): every call multiplexed on
	// one connection, as with an https API, which negotiates HTTP/2.
	UpstreamH2 = "h2"
	// UpstreamHTTP1 is HTTP/1.1: a connection per streaming call, as with
	// a local model server (vLLM, Ollama, llama.cpp).
	UpstreamHTTP1 = "http1"
)

// Config is one load run. Zero fields take their defaults; durations
// follow the simulator's convention: zero is the default, negative none.
type Config struct {
	// Streams is how many concurrent streaming clients go through the
	// server. Default 100.
	Streams int
	// RunsPerClient is how many runs each client makes, one after the
	// other (on one thread). Default 1.
	RunsPerClient int
	// Endpoint is EndpointNative (the default) or EndpointSeed.
	Endpoint string
	// Ramp spreads the clients' starts evenly over this long. Default 1s.
	Ramp time.Duration
	// Direct is how many clients call the simulator directly, at the same
	// time, for the lower bound. Default min(Streams, 50); negative none.
	Direct int
	// Stalled is how many extra clients open a stream through the server
	// and never read it, until the others are done. Default none.
	Stalled int
	// Tokens is the reply length. Default 100.
	Tokens int
	// Pace is the time between tokens. Default 50ms (20 tokens/s).
	Pace time.Duration
	// TTFT is the simulator's time to first token. Default none.
	TTFT time.Duration
	// Duration caps the load: streams still open then are cut and
	// counted as timeouts. Default 5m.
	Duration time.Duration
	// Input is the question every run asks. It must not name a tool.
	// Default "Hello! How are you today?".
	Input string

	// SimURL is an OpenAI-compatible simulator to use ("http://HOST:PORT/v1",
	// loopback only) instead of starting one; its options (tokens, pace,
	// stamps) are its own. Default: one in this process.
	SimURL string
	// URL is a running agentstream server to load ("http://HOST:PORT",
	// loopback only) instead of starting one; its model must be the
	// simulator at SimURL. Default: a child process.
	URL string
	// ServerPID is the pid of the server at URL, to measure its CPU and
	// memory. A child's pid is known.
	ServerPID int
	// APIKey is sent as Authorization: Bearer to the server at URL, when
	// it has identities configured. Default none. The bench's own
	// children get a key of their own (auth.keys of agentstream; the relay
	// is sent it too and ignores it), so that every figure includes
	// authenticating each request.
	APIKey string
	// ServerBin is the agentstream binary to run the server with. Default
	// this process's executable.
	ServerBin string
	// Upstream is how the server the bench starts talks to the
	// simulator: UpstreamH2 or UpstreamHTTP1 (config openai.h2c of
	// agentstream, the relay's --h2c). Default h2 with the simulator the
	// bench runs, which serves both; http1 with one at SimURL, which may
	// not. Not with URL: that server's upstream is its own.
	Upstream string
	// Baseline starts `agentstream bench relay` (see Relay) as the server
	// instead of `agentstream serve`: the floor of a net/http relay, to
	// compare agentstream's figures with, on either endpoint.
	Baseline bool
	// ProgressEvery is the period of the progress lines. Default 1s.
	ProgressEvery time.Duration

	// Instances is how many server children to start. Above 1 they share
	// the PostgreSQL database at DatabaseURL and the Redis at RedisURL
	// (under RedisPrefix), client i starts its runs on instance i mod
	// Instances, and each run is read besides from the next instance
	// (GET /v1/runs/{id}/events): the cross-instance reader,
	// Report.Cross. Process figures are the first instance's. Default 1.
	Instances int
	// DatabaseURL is the PostgreSQL database (postgres://, on this
	// machine) the children share; the bench's threads and runs stay in
	// it. Required with several instances; with one, it replaces the
	// child's temporary SQLite file. Default none.
	DatabaseURL string
	// RedisURL is the Redis (on this machine) the children's event log
	// uses; the bench reports what it did over the window (Report.Redis,
	// from INFO: exact on a Redis nobody else uses) and deletes the keys
	// under RedisPrefix at the end. Required with several instances.
	// Default none: the in-process log.
	RedisURL string
	// RedisPrefix is the children's event_log.redis_prefix. Default
	// "agentstream-bench-RANDOM:", a prefix of the bench's own.
	RedisPrefix string

	// Soak, when positive, makes the load a soak instead: for this long,
	// new runs arrive at Rate per second, each on a new conversation (one
	// run per client; Streams and Ramp are not used), and the server's
	// resident memory is sampled every SoakSampleEvery (Report.Soak), to
	// show whether it reaches a plateau. Duration then bounds the runs
	// still open when the arrivals stop. Default 0: no soak. Direct
	// clients default to none.
	Soak time.Duration
	// Rate is the soak's arrivals per second. Default 100.
	Rate float64
	// SoakSampleEvery is the period of the soak's memory samples.
	// Default 5s.
	SoakSampleEvery time.Duration
}

// Defaults of Config.
const (
	DefaultStreams   = 100
	DefaultTokens    = 100
	DefaultPace      = 50 * time.Millisecond
	DefaultRamp      = time.Second
	DefaultDirectMax = 50
	DefaultDuration  = 5 * time.Minute
	DefaultInput     = "Hello! How are you today?"
	DefaultRate      = 100
	DefaultSoakEvery = 5 * time.Second
	sampleEvery      = 100 * time.Millisecond
)

// WithDefaults returns c with its defaults applied.
func (c Config) WithDefaults() Config {
	if c.Streams <= 0 {
		c.Streams = DefaultStreams
	}
	if c.RunsPerClient <= 0 || c.Soak > 0 {
		c.RunsPerClient = 1
	}
	if c.Soak > 0 {
		if c.Rate == 0 {
			c.Rate = DefaultRate
		}
		if c.SoakSampleEvery <= 0 {
			c.SoakSampleEvery = DefaultSoakEvery
		}
		if c.Direct == 0 {
			c.Direct = -1
		}
	}
	if c.Endpoint == "" {
		c.Endpoint = EndpointNative
	}
	if c.Upstream == "" && c.URL == "" {
		c.Upstream = UpstreamH2
		if c.SimURL != "" {
			c.Upstream = UpstreamHTTP1
		}
	}
	if c.Ramp == 0 {
		c.Ramp = DefaultRamp
	}
	c.Ramp = max(c.Ramp, 0)
	if c.Direct == 0 {
		c.Direct = min(c.Streams, DefaultDirectMax)
	}
	c.Direct = max(c.Direct, 0)
	c.Stalled = max(c.Stalled, 0)
	if c.Tokens <= 0 {
		c.Tokens = DefaultTokens
	}
	if c.Pace == 0 {
		c.Pace = DefaultPace
	}
	if c.Duration <= 0 {
		c.Duration = DefaultDuration
	}
	if c.Input == "" {
		c.Input = DefaultInput
	}
	if c.ProgressEvery <= 0 {
		c.ProgressEvery = time.Second
	}
	if c.Instances <= 0 {
		c.Instances = 1
	}
	if c.RedisURL != "" && c.RedisPrefix == "" {
		c.RedisPrefix = newRedisPrefix()
	}
	return c
}

// Validate reports a config that cannot run.
func (c Config) Validate() error {
	var errs []error
	if c.Endpoint != EndpointNative && c.Endpoint != EndpointSeed {
		errs = append(errs, fmt.Errorf("endpoint %q: want native or seed", c.Endpoint))
	}
	switch {
	case c.URL != "" && c.Upstream != "":
		errs = append(errs, errors.New("with a server URL, the upstream is that server's own: no upstream to choose"))
	case c.URL == "" && c.Upstream != UpstreamH2 && c.Upstream != UpstreamHTTP1:
		errs = append(errs, fmt.Errorf("upstream %q: want h2 or http1", c.Upstream))
	}
	for _, u := range []struct{ name, url string }{{"server URL", c.URL}, {"simulator URL", c.SimURL}} {
		if u.url != "" {
			if err := loopbackURL(u.url); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", u.name, err))
			}
		}
	}
	if c.URL != "" && c.SimURL == "" && c.Direct > 0 {
		errs = append(errs, errors.New("with a server URL, give the simulator URL its model uses (or no direct clients)"))
	}
	if c.Baseline && (c.URL != "" || c.Stalled > 0) {
		errs = append(errs, errors.New("the baseline relay is started by the bench (no server URL), without stalled clients"))
	}
	if c.ServerPID < 0 {
		errs = append(errs, errors.New("negative server pid"))
	}
	if c.Soak < 0 || c.Rate < 0 || (c.Soak == 0 && c.Rate > 0) {
		errs = append(errs, errors.New("a soak needs a positive duration, and a rate (runs per second) only with a soak"))
	}
	if c.Soak > 0 && (c.Stalled > 0 || c.Baseline) {
		errs = append(errs, errors.New("a soak runs without stalled clients or the baseline relay"))
	}
	if c.Instances > 1 && (c.DatabaseURL == "" || c.RedisURL == "") {
		errs = append(errs, errors.New("several instances share a PostgreSQL database and a Redis: give both URLs"))
	}
	if (c.Instances > 1 || c.DatabaseURL != "" || c.RedisURL != "") && (c.URL != "" || c.Baseline || c.Soak > 0 || c.Endpoint != EndpointNative) {
		errs = append(errs, errors.New("several instances, a database URL or a Redis URL: the bench starts the servers itself, on the native endpoint, without the baseline relay or a soak"))
	}
	if c.DatabaseURL != "" {
		if u, err := url.Parse(c.DatabaseURL); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
			errs = append(errs, errors.New("database URL: want postgres://…"))
		} else if err := loopbackHost(u.Host); err != nil {
			errs = append(errs, fmt.Errorf("database URL: %w", err))
		}
	}
	if c.RedisURL != "" {
		if u, err := url.Parse(c.RedisURL); err != nil || (u.Scheme != "redis" && u.Scheme != "unix") {
			errs = append(errs, errors.New("redis URL: want redis://…"))
		} else if err := loopbackHost(u.Host); err != nil {
			errs = append(errs, fmt.Errorf("redis URL: %w", err))
		}
	}
	if strings.ContainsAny(c.RedisPrefix, "{}") {
		errs = append(errs, errors.New("redis prefix: no braces"))
	}
	return errors.Join(errs...)
}

// loopbackURL checks that raw is an http URL of a loopback host: bench
// loads nothing but this machine.
func loopbackURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	if u.Scheme != "http" {
		return fmt.Errorf("%q: want an http:// URL", raw)
	}
	host := u.Hostname()
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("%q is not a loopback address: bench loads this machine only", raw)
	}
	return nil
}

// Run runs the load described by cfg and reports what it measured,
// writing progress lines to progress (nil for none). It returns an error
// only when the load cannot start (a bad config, a server that does not
// come up); failed streams are counted in the report. Everything it
// starts is stopped before it returns.
func Run(ctx context.Context, cfg Config, progress io.Writer) (Report, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return Report{}, err
	}
	if progress == nil {
		progress = io.Discard
	}
	rep := Report{Settings: Settings{
		Streams: cfg.Streams, RunsPerClient: cfg.RunsPerClient, Endpoint: cfg.Endpoint, Upstream: cfg.Upstream, Tokens: cfg.Tokens,
		PaceMS: ms(max(cfg.Pace, 0)), TTFTMS: ms(max(cfg.TTFT, 0)), RampMS: ms(cfg.Ramp),
		Direct: cfg.Direct, Stalled: cfg.Stalled, DurationS: cfg.Duration.Seconds(),
		ServerURL: cfg.URL, SimURL: cfg.SimURL, Baseline: cfg.Baseline,
		SoakS: cfg.Soak.Seconds(), Rate: cfg.Rate,
	}}

	// The upstream.
	if cfg.SimURL == "" {
		ttft := cfg.TTFT
		if ttft == 0 {
			ttft = -1
		}
		running, err := sim.Start("127.0.0.1:0", sim.Options{
			Tokens: cfg.Tokens, Pace: cfg.Pace, TTFT: ttft, Stamp: true, Record: -1,
		})
		if err != nil {
			return rep, fmt.Errorf("starting the simulator: %w", err)
		}
		defer func() { _ = running.Close() }()
		rep.Settings.SimURL, rep.Settings.SimInProcess = running.URL(), true
	}
	// The server, or the instances.
	serverPID := cfg.ServerPID
	var servers []*child
	stopServers := func() []int {
		var status []int
		for _, c := range servers {
			status = append(status, c.stop())
		}
		servers = nil
		return status
	}
	defer stopServers()
	serverURLs := []string{cfg.URL}
	auth := cfg.APIKey
	if cfg.URL == "" {
		bin := cfg.ServerBin
		if bin == "" {
			exe, err := os.Executable()
			if err != nil {
				return rep, fmt.Errorf("finding the agentstream binary: %w", err)
			}
			bin = exe
		}
		shared := sharedStore{databaseURL: cfg.DatabaseURL, redisURL: cfg.RedisURL, redisPrefix: cfg.RedisPrefix, apiKey: newBenchKey()}
		auth = shared.apiKey
		serverURLs = nil
		// One after the other: the first applies the database's
		// migrations before the others start.
		for range cfg.Instances {
			srv, err := startChild(ctx, bin, rep.Settings.SimURL, cfg.capacity(), cfg.Upstream == UpstreamH2, cfg.Baseline, shared)
			if err != nil {
				return rep, err
			}
			servers = append(servers, srv)
			serverURLs = append(serverURLs, srv.url)
		}
		rep.Settings.ServerURL, rep.Settings.ServerChild = servers[0].url, true
		serverPID = servers[0].cmd.Process.Pid
	}
	if cfg.Instances > 1 {
		rep.Settings.Instances, rep.Settings.InstanceURLs = cfg.Instances, serverURLs
	}
	rep.Settings.APIKey = auth != ""
	var meter *redisMeter
	var redis0 redisInfo
	if cfg.RedisURL != "" {
		rep.Settings.RedisPrefix = cfg.RedisPrefix
		var err error
		if meter, err = newRedisMeter(cfg.RedisURL, cfg.RedisPrefix); err != nil {
			return rep, err
		}
		defer meter.close()
		defer func() {
			if err := meter.deleteKeys(context.WithoutCancel(ctx)); err != nil {
				_, _ = fmt.Fprintf(progress, "bench: deleting the Redis keys under %q: %v\n", cfg.RedisPrefix, err)
			}
		}()
		if redis0, err = meter.snapshot(ctx); err != nil {
			return rep, err
		}
	}
	_, _ = fmt.Fprintf(progress, "bench: server %s (pid %d), simulator %s; %d streams, %d direct, %d stalled\n",
		rep.Settings.ServerURL, serverPID, rep.Settings.SimURL, cfg.Streams, cfg.Direct, cfg.Stalled)

	// The clients share one transport with an idle connection for each.
	transport := &http.Transport{
		Proxy:               nil, // loopback: never through a proxy
		DialContext:         (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: cfg.Streams + cfg.Direct + cfg.Stalled + 16,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	defer transport.CloseIdleConnections()
	l := &load{
		cfg:        cfg,
		client:     &http.Client{Transport: transport},
		serverURL:  rep.Settings.ServerURL,
		serverURLs: serverURLs,
		auth:       auth,
		simURL:     rep.Settings.SimURL,
		server:     newPathStats(cfg.Streams),
		direct:     newPathStats(cfg.Direct),
		stalled:    &stalledStats{clients: cfg.Stalled, errors: map[string]int{}},
		release:    make(chan struct{}),
	}
	if cfg.Instances > 1 {
		l.cross = newPathStats(cfg.Streams)
	}
	l.measure(ctx, &rep, serverPID, progress)
	if meter != nil {
		// The runs' last writes are done: every stream has ended.
		if redis1, err := meter.snapshot(ctx); err != nil {
			rep.Notes = append(rep.Notes, fmt.Sprintf("Redis not measured: %v", err))
		} else {
			rep.Redis = redisUse(redis0, redis1, rep.Server.Completed)
		}
	}

	if servers != nil {
		status := stopServers()
		if rep.ServerProcess != nil {
			rep.ServerProcess.ExitStatus = &status[0]
		}
		for i, st := range status {
			if st != 0 {
				what := "the server"
				if len(status) > 1 {
					what = fmt.Sprintf("instance %d", i+1)
				}
				rep.Notes = append(rep.Notes, fmt.Sprintf("%s exited with status %d after SIGTERM", what, st))
			}
		}
	}
	return rep, nil
}

// capacity is the runs the child server must run at once: every client,
// or for a soak four times the runs expected open (arrival rate × a run's
// length), so that a slow moment does not queue them.
func (c Config) capacity() int {
	if c.Soak <= 0 {
		return c.Streams + c.Stalled
	}
	run := max(c.TTFT, 0) + time.Duration(c.Tokens)*max(c.Pace, 0) + time.Second
	return max(c.Streams, int(4*c.Rate*run.Seconds())+64)
}

// load is one Run's clients and what they measure.
type load struct {
	cfg               Config
	client            *http.Client
	launched          atomic.Int64 // soak: the runs started so far
	soak              []SoakSample // soak: the memory samples, by sample
	serverURL, simURL string
	// serverURLs are the instances (one unless Config.Instances > 1).
	serverURLs []string
	// auth is the API key sent to the server (Authorization: Bearer);
	// empty: none.
	auth           string
	server, direct *pathStats
	// cross is the cross-instance readers' path; nil with one instance.
	cross   *pathStats
	stalled *stalledStats
	release chan struct{} // closed when stalled clients may let go
}

// procSample is the peak of the 100ms samples.
type procSample struct {
	rssPeak, rssAtPeakOpen int64
	openAtPeak             int
	selfRSSPeak            int64
}

// measure runs the clients, sampling the processes meanwhile, and fills
// the report.
func (l *load) measure(ctx context.Context, rep *Report, serverPID int, progress io.Writer) {
	cfg := l.cfg
	loadCtx, cancel := context.WithTimeout(ctx, cfg.Soak+cfg.Duration)
	defer cancel()

	var rssBefore int64
	var rssErr error
	if serverPID > 0 {
		rssBefore, rssErr = readRSS(serverPID)
	}

	// The stalled clients open their streams first and hold them
	// throughout.
	var stalledWG sync.WaitGroup
	opened := make(chan struct{}, cfg.Stalled)
	for range cfg.Stalled {
		stalledWG.Go(func() { l.stall(loadCtx, opened) })
	}
	for range cfg.Stalled {
		select {
		case <-opened:
		case <-loadCtx.Done():
		}
	}

	// The window starts.
	var serverCPU0 cpuUse
	var serverCPUErr error
	if serverPID > 0 {
		serverCPU0, serverCPUErr = readCPU(serverPID)
	}
	selfCPU0, selfCPUErr := readCPU(0)
	machine0, machineErr := readMachineCPU()
	t0 := time.Now()
	rep.StartedAt = t0

	// Sampling and progress.
	var peak procSample
	peak.rssPeak, peak.rssAtPeakOpen = rssBefore, rssBefore
	if cfg.Soak > 0 {
		l.soakSample(serverPID, 0, false)
	}
	sampleDone := make(chan struct{})
	var samplerWG sync.WaitGroup
	samplerWG.Go(func() { l.sample(serverPID, t0, &peak, sampleDone, progress) })

	var wg sync.WaitGroup
	if cfg.Soak > 0 {
		l.arrive(loadCtx, &wg, t0)
	} else {
		for i := range cfg.Streams {
			at := t0.Add(time.Duration(int64(cfg.Ramp) * int64(i) / int64(cfg.Streams)))
			wg.Go(func() { l.serverClient(loadCtx, i, at) })
		}
	}
	for i := range cfg.Direct {
		at := t0.Add(time.Duration(int64(cfg.Ramp) * int64(i) / int64(cfg.Direct)))
		wg.Go(func() { l.directClient(loadCtx, at) })
	}
	wg.Wait()

	// The window ends.
	window := time.Since(t0)
	var serverCPU1, selfCPU1 cpuUse
	if serverPID > 0 && serverCPUErr == nil {
		serverCPU1, serverCPUErr = readCPU(serverPID)
	}
	if selfCPUErr == nil {
		selfCPU1, selfCPUErr = readCPU(0)
	}
	if machineErr == nil {
		if machine1, err := readMachineCPU(); err == nil {
			rep.Machine = &Machine{CPUs: runtime.NumCPU(), BusyPercent: busyPercent(machine0, machine1)}
		}
	}
	rep.DurationCapReached = loadCtx.Err() != nil && ctx.Err() == nil
	if ctx.Err() != nil {
		rep.Notes = append(rep.Notes, "interrupted before every client was done")
	}
	close(l.release)
	stalledWG.Wait()
	close(sampleDone)
	samplerWG.Wait()
	if cfg.Soak > 0 {
		rep.Soak = l.soakReport(ctx, serverPID, t0)
		l.server.clients = int(l.launched.Load())
	}

	rep.WindowS = window.Seconds()
	rep.Server = l.server.report(window)
	rep.Direct = l.direct.report(window)
	if l.cross != nil {
		cross := l.cross.report(window)
		rep.Cross = &cross
		rep.CrossMinusServer = diff(cross.TokenLatency, rep.Server.TokenLatency)
	}
	rep.Stamps = l.server.stamped.Load() || l.direct.stamped.Load()
	rep.ServerMinusDirect = Diff{
		TTFB:         diff(rep.Server.TTFB, rep.Direct.TTFB),
		TTFT:         diff(rep.Server.TTFT, rep.Direct.TTFT),
		TokenLatency: diff(rep.Server.TokenLatency, rep.Direct.TokenLatency),
	}
	if cfg.Stalled > 0 {
		rep.Stalled = l.stalled.report()
	}
	tokens := rep.Server.Tokens
	switch {
	case serverPID == 0:
	case serverCPUErr != nil || rssErr != nil:
		rep.Notes = append(rep.Notes, fmt.Sprintf("server process %d not measured: %v", serverPID, errors.Join(serverCPUErr, rssErr)))
	default:
		cpu := serverCPU1.sub(serverCPU0)
		rep.ServerProcess = &Process{
			PID: serverPID, CPUS: cpu.total().Seconds(), CPUUserS: cpu.user.Seconds(), CPUSystemS: cpu.system.Seconds(),
			CPUPercent: 100 * cpu.total().Seconds() / window.Seconds(), CPUPerTokenUS: perToken(cpu.total(), tokens),
			CPUPerRunMS: perRun(cpu.total(), rep.Server.Completed),
			RSSBefore:   rssBefore, RSSPeak: peak.rssPeak, RSSAtPeakOpen: peak.rssAtPeakOpen, OpenAtPeak: peak.openAtPeak,
			MemoryPerStream: perStream(rssBefore, peak.rssAtPeakOpen, peak.openAtPeak),
		}
	}
	if selfCPUErr == nil {
		cpu := selfCPU1.sub(selfCPU0)
		rep.BenchProcess = &Process{
			PID: os.Getpid(), CPUS: cpu.total().Seconds(), CPUUserS: cpu.user.Seconds(), CPUSystemS: cpu.system.Seconds(),
			CPUPercent: 100 * cpu.total().Seconds() / window.Seconds(), CPUPerTokenUS: perToken(cpu.total(), tokens),
			RSSPeak: peak.selfRSSPeak,
		}
	}
}

func perToken(cpu time.Duration, tokens int64) float64 {
	if tokens <= 0 {
		return 0
	}
	return float64(cpu.Microseconds()) / float64(tokens)
}

func perRun(cpu time.Duration, runs int) float64 {
	if runs <= 0 {
		return 0
	}
	return float64(cpu.Microseconds()) / 1000 / float64(runs)
}

// sample reads the processes' memory every 100ms and writes a progress
// line every ProgressEvery, until done.
func (l *load) sample(serverPID int, t0 time.Time, peak *procSample, done <-chan struct{}, progress io.Writer) {
	tick := time.NewTicker(sampleEvery)
	defer tick.Stop()
	lastLine, lastTokens := t0, int64(0)
	lastSoak := t0
	var lastCPU cpuUse
	if serverPID > 0 {
		lastCPU, _ = readCPU(serverPID)
	}
	for {
		select {
		case <-done:
			return
		case now := <-tick.C:
			open := int(l.server.open.Load()) + int(l.stalled.opened.Load())
			if serverPID > 0 {
				if rss, err := readRSS(serverPID); err == nil {
					peak.rssPeak = max(peak.rssPeak, rss)
					if open > peak.openAtPeak || (open == peak.openAtPeak && rss > peak.rssAtPeakOpen) {
						peak.openAtPeak, peak.rssAtPeakOpen = open, rss
					}
				}
			}
			if rss, err := readRSS(0); err == nil {
				peak.selfRSSPeak = max(peak.selfRSSPeak, rss)
			}
			if l.cfg.Soak > 0 && now.Sub(lastSoak) >= l.cfg.SoakSampleEvery {
				l.soakSample(serverPID, now.Sub(t0), false)
				lastSoak = now
			}
			if now.Sub(lastLine) < l.cfg.ProgressEvery {
				continue
			}
			tokens := l.server.tokens.Load()
			rate := float64(tokens-lastTokens) / now.Sub(lastLine).Seconds()
			runs := int64(l.cfg.Streams * l.cfg.RunsPerClient)
			if l.cfg.Soak > 0 {
				runs = l.launched.Load()
			}
			line := fmt.Sprintf("%5.1fs  server: %d open, %d/%d runs done, %d errors, %d tokens (%.0f/s)",
				now.Sub(t0).Seconds(), l.server.open.Load(), l.server.done.Load(), runs,
				l.server.failed.Load(), tokens, rate)
			if l.cfg.Direct > 0 {
				line += fmt.Sprintf(" | direct: %d open, %d/%d done, %d errors",
					l.direct.open.Load(), l.direct.done.Load(), l.cfg.Direct*l.cfg.RunsPerClient, l.direct.failed.Load())
			}
			if serverPID > 0 {
				if cpu, err := readCPU(serverPID); err == nil {
					line += fmt.Sprintf(" | server CPU %.0f%%, RSS %s",
						100*cpu.sub(lastCPU).total().Seconds()/now.Sub(lastLine).Seconds(), fmtBytes(float64(peak.rssPeak)))
					lastCPU = cpu
				}
			}
			_, _ = fmt.Fprintln(progress, line)
			lastLine, lastTokens = now, tokens
		}
	}
}

// pathStats gathers the measures of one path's clients.
type pathStats struct {
	clients int
	// Live counters, for progress and concurrency.
	open, maxOpen, tokens, done, failed atomic.Int64
	stamped                             atomic.Bool

	mu                   sync.Mutex
	runs, completed      int
	errors               map[string]int
	ttfb, ttft, lat, gap []time.Duration
	thread               []time.Duration
}

func newPathStats(clients int) *pathStats {
	return &pathStats{clients: clients, errors: map[string]int{}}
}

// opened counts a stream that received its first byte.
func (p *pathStats) opened() {
	n := p.open.Add(1)
	for {
		m := p.maxOpen.Load()
		if n <= m || p.maxOpen.CompareAndSwap(m, n) {
			return
		}
	}
}

// add records one run's outcome (errKind "" for success) and samples.
func (p *pathStats) add(errKind string, s *samples) {
	p.done.Add(1)
	if errKind != "" {
		p.failed.Add(1)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.runs++
	if errKind == "" {
		p.completed++
	} else {
		p.errors[errKind]++
	}
	p.ttfb = append(p.ttfb, s.ttfb...)
	p.ttft = append(p.ttft, s.ttft...)
	p.lat = append(p.lat, s.lat...)
	p.gap = append(p.gap, s.gap...)
	p.thread = append(p.thread, s.thread...)
	s.reset()
}

func (p *pathStats) report(window time.Duration) Path {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := Path{
		Clients: p.clients, Runs: p.runs, Completed: p.completed, Errors: p.errors, ErrorCount: p.runs - p.completed,
		MaxOpen: int(p.maxOpen.Load()), Tokens: p.tokens.Load(),
		TTFB: newDist(p.ttfb), TTFT: newDist(p.ttft), TokenLatency: newDist(p.lat), TokenGap: newDist(p.gap),
		CreateThread: newDist(p.thread),
	}
	if window > 0 {
		r.TokensPerS = float64(r.Tokens) / window.Seconds()
	}
	return r
}

// samples are one client's measures of one run, before they join the
// path's.
type samples struct {
	ttfb, ttft, lat, gap, thread []time.Duration
	stamps                       []int64
}

func (s *samples) reset() {
	s.ttfb, s.ttft, s.lat, s.gap, s.thread = s.ttfb[:0], s.ttft[:0], s.lat[:0], s.gap[:0], s.thread[:0]
}

// stalledStats counts the stalled clients' streams.
type stalledStats struct {
	clients int
	opened  atomic.Int64
	mu      sync.Mutex
	errors  map[string]int
}

func (s *stalledStats) fail(kind string) {
	s.mu.Lock()
	s.errors[kind]++
	s.mu.Unlock()
}

func (s *stalledStats) report() *Stalled {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, v := range s.errors {
		n += v
	}
	return &Stalled{Clients: s.clients, Opened: int(s.opened.Load()), Errors: s.errors, ErrorCount: n}
}
