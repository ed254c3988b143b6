package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/agentstream/agentstream/bench"
)

// benchmark runs the load generator: progress on stderr, the report's
// tables on stdout, and the report as JSON in the --json file.
func benchmark(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "relay" {
		return relay(ctx, args[1:], stderr)
	}
	fs := flag.NewFlagSet("agentstream bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg bench.Config
	fs.IntVar(&cfg.Streams, "streams", bench.DefaultStreams, "concurrent streaming clients through the server")
	fs.IntVar(&cfg.Tokens, "tokens", bench.DefaultTokens, "reply length in tokens")
	fs.DurationVar(&cfg.Pace, "pace", bench.DefaultPace, "time between tokens; 0: none, as fast as possible")
	ttft := fs.Duration("ttft", 0, "the simulator's time to first token (default none)")
	fs.DurationVar(&cfg.Ramp, "ramp", bench.DefaultRamp, "spread the clients' starts over this long; 0: all at once")
	fs.IntVar(&cfg.RunsPerClient, "runs-per-client", 1, "runs each client makes, one after the other")
	fs.StringVar(&cfg.Endpoint, "endpoint", bench.EndpointNative, "native (threads and runs) or seed (POST /v1/chat)")
	fs.StringVar(&cfg.Upstream, "upstream", "", "how the server the bench starts (agentstream, the relay) talks to the simulator: h2 (HTTP/2 without TLS, one multiplexed connection) or http1 (HTTP/1.1, a connection per stream, as with a local model server) (default h2; http1 with --sim-url; none with --url)")
	var direct optionalInt
	fs.Var(&direct, "direct", "`N` clients that call the simulator directly, the lower bound (default min(streams, 50); 0 for none)")
	fs.IntVar(&cfg.Stalled, "stalled", 0, "extra clients that open a stream and never read it")
	fs.DurationVar(&cfg.Duration, "duration", bench.DefaultDuration, "cap: streams still open then are cut and counted as timeouts")
	fs.StringVar(&cfg.Input, "input", bench.DefaultInput, "the question each run asks")
	fs.StringVar(&cfg.SimURL, "sim-url", "", "use the simulator at this `URL` (http://127.0.0.1:PORT/v1; run it with agentstream sim --stamp for token latencies) instead of one in process")
	fs.StringVar(&cfg.URL, "url", "", "load this running server (http://127.0.0.1:PORT) instead of starting one")
	fs.IntVar(&cfg.ServerPID, "server-pid", 0, "with --url, the server's pid, to measure its CPU and memory")
	fs.StringVar(&cfg.APIKey, "api-key", "", "with --url, the API key to send (Authorization: Bearer); the servers the bench starts get a key of their own, which every request sends")
	fs.StringVar(&cfg.ServerBin, "server-bin", "", "the agentstream binary to start the server with (default this one)")
	fs.BoolVar(&cfg.Baseline, "baseline", false, "load a bare net/http relay of the simulator (agentstream bench relay, either endpoint) instead of agentstream: the floor to compare with")
	compare := fs.Int("compare", 0, "run the load `N` times against agentstream and N times against the bare relay, alternately, on the same --endpoint and --upstream, and compare them (no --url, --stalled or --baseline; 0: one run)")
	fs.DurationVar(&cfg.Soak, "soak", 0, "a soak of this long instead: new runs (each a new conversation) arrive at --rate per second, and the server's memory is sampled every --soak-sample, to show whether it reaches a plateau (--streams and --ramp unused; --duration bounds the runs open at the end)")
	fs.Float64Var(&cfg.Rate, "rate", 0, "with --soak, new runs per second (default 100)")
	fs.DurationVar(&cfg.SoakSampleEvery, "soak-sample", bench.DefaultSoakEvery, "with --soak, the period of the memory samples")
	fs.IntVar(&cfg.Instances, "instances", 1, "server children to start, sharing --database-url and --redis-url; above 1, each run is read besides from another instance than its own, and that reader's latency reported")
	fs.StringVar(&cfg.DatabaseURL, "database-url", "", "the PostgreSQL `URL` (postgres://, this machine) the servers share; the bench's threads and runs stay there (required with --instances above 1; default a temporary SQLite file)")
	fs.StringVar(&cfg.RedisURL, "redis-url", "", "the Redis `URL` (redis://, this machine) of the servers' event log; what Redis did is reported (exact on a Redis of the bench's own) and the keys deleted at the end (required with --instances above 1)")
	fs.StringVar(&cfg.RedisPrefix, "redis-prefix", "", "the servers' Redis key prefix (default agentstream-bench-RANDOM:)")
	jsonFile := fs.String("json", "", "write the report (with --compare, every round's and the figures) as JSON to this file")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		_, _ = fmt.Fprintf(stderr, "agentstream bench: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	// Flags say "0 for none"; the Config, like the simulator's, says
	// "negative for none, zero for the default".
	switch {
	case !direct.set:
		cfg.Direct = 0
	case direct.n == 0:
		cfg.Direct = -1
	default:
		cfg.Direct = direct.n
	}
	if *ttft > 0 {
		cfg.TTFT = *ttft
	}
	if cfg.Pace == 0 {
		cfg.Pace = -1 // --pace 0: as fast as possible
	}
	if cfg.Ramp == 0 {
		cfg.Ramp = -1
	}
	if cfg.Streams <= 0 || cfg.Tokens <= 0 || cfg.RunsPerClient <= 0 || cfg.Stalled < 0 || cfg.Duration <= 0 || direct.n < 0 || cfg.Instances <= 0 {
		_, _ = fmt.Fprintln(stderr, "agentstream bench: --streams, --tokens, --runs-per-client, --duration and --instances must be positive, --stalled and --direct not negative")
		return 2
	}
	switch {
	case *compare < 0:
		_, _ = fmt.Fprintln(stderr, "agentstream bench: --compare must not be negative")
		return 2
	case *compare > 0 && cfg.Baseline:
		_, _ = fmt.Fprintln(stderr, "agentstream bench: --compare runs the baseline relay itself: drop --baseline")
		return 2
	}
	check := cfg
	check.Baseline = check.Baseline || *compare > 0
	if err := check.WithDefaults().Validate(); err != nil {
		if *compare > 0 {
			_, _ = fmt.Fprintf(stderr, "agentstream bench: --compare runs the baseline relay too: %v\n", err)
		} else {
			_, _ = fmt.Fprintf(stderr, "agentstream bench: %v\n", err)
		}
		return 2
	}
	var rep interface{ WriteTable(io.Writer) error }
	var err error
	// A comparison that failed in a later round still has the rounds
	// before it to show.
	partial := false
	if *compare > 0 {
		var c bench.Comparison
		c, err = bench.Compare(ctx, cfg, *compare, stderr)
		rep, partial = &c, c.Rounds > 0
	} else {
		var r bench.Report
		r, err = bench.Run(ctx, cfg, stderr)
		rep = &r
	}
	if err != nil {
		_, _ = fmt.Fprintf(stderr, "agentstream bench: %v\n", err)
		if !partial {
			return 1
		}
	}
	if err := rep.WriteTable(stdout); err != nil {
		_, _ = fmt.Fprintf(stderr, "agentstream bench: %v\n", err)
		return 1
	}
	if *jsonFile != "" {
		data, err := json.MarshalIndent(rep, "", "  ")
		if err == nil {
			err = os.WriteFile(*jsonFile, append(data, '\n'), 0o644)
		}
		if err != nil {
			_, _ = fmt.Fprintf(stderr, "agentstream bench: writing the report: %v\n", err)
			return 1
		}
	}
	if err != nil {
		return 1
	}
	return 0
}

// relay runs the baseline relay (bench.Relay) until ctx ends: the server
// `agentstream bench --baseline` measures instead of agentstream.
func relay(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("agentstream bench relay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:0", "loopback address to listen on")
	model := fs.String("model-url", "", "the simulator's URL (http://127.0.0.1:PORT/v1)")
	h2c := fs.Bool("h2c", false, "talk HTTP/2 without TLS to the simulator (agentstream sim serves it), all calls on one connection; without, HTTP/1.1, a connection per call")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *model == "" || fs.NArg() > 0 {
		_, _ = fmt.Fprintln(stderr, "agentstream bench relay: give --model-url, and no arguments")
		return 2
	}
	if err := bench.Relay(ctx, *addr, *model, *h2c, stderr); err != nil {
		_, _ = fmt.Fprintf(stderr, "agentstream bench relay: %v\n", err)
		return 1
	}
	return 0
}

// optionalInt is an int flag whose default its usage describes: the flag
// package would print "(default -1)" for the "unset" sentinel besides.
type optionalInt struct {
	n   int
	set bool
}

func (o *optionalInt) String() string {
	if o == nil || !o.set {
		return ""
	}
	return strconv.Itoa(o.n)
}

func (o *optionalInt) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil {
		return errors.New("not a whole number")
	}
	o.n, o.set = n, true
	return nil
}
