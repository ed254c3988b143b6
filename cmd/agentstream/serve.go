package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"strconv"

	"github.com/agentstream/agentstream/config"
	"github.com/agentstream/agentstream/server"
)

// loadConfig reads the config file, then the environment, then the flags;
// each overrides the one before. A bad config is config.Problems: every
// problem at once, each at its line in the file or at its variable or flag.
func loadConfig(args []string, getenv func(string) string, stderr io.Writer) (config.Config, error) {
	fs := flag.NewFlagSet("agentstream serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		_, _ = fmt.Fprint(fs.Output(), "Usage: agentstream serve [flags]\n\n"+
			"Settings come from the config file, then the environment, then these flags,\n"+
			"each overriding the one before. The file's keys are documented in config/config.go.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	var (
		path        = fs.String("config", "", "YAML config `file` (env AGENTSTREAM_CONFIG; default none)")
		addr        = fs.String("addr", "", "listen `address` (env AGENTSTREAM_ADDR; default 127.0.0.1:8080); any other than loopback needs an identity: auth in the config file, or a key made with agentstream keys create")
		databaseURL = fs.String("database-url", "", "the store: a SQLite file path (or sqlite://PATH) or a postgres:// `URL` (env AGENTSTREAM_DATABASE_URL; default agentstream.db)")
		redisURL    = fs.String("redis-url", "", "a redis:// `URL` for the event log shared by several instances (env AGENTSTREAM_REDIS_URL; default none: the in-process log)")
		model       = fs.String("model", "", "the upstream model `name` of agents that name none (env AGENTSTREAM_MODEL; default gpt-4o-mini, or sim with neither OPENAI_API_KEY nor OPENAI_BASE_URL)")
		logLevel    = fs.String("log-level", "info", "log `level`: debug, info, warn or error")
		debugAddr   = fs.String("debug-addr", "", "serve the Go profiler (/debug/pprof/) on this loopback `address` (env AGENTSTREAM_DEBUG_ADDR; default off)")
	)
	if err := fs.Parse(args); err != nil {
		return config.Config{}, err
	}
	if fs.NArg() > 0 {
		return config.Config{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return config.Config{}, fmt.Errorf("--log-level: %w", err)
	}
	// Read after parsing, not as the flag's default: the help would show
	// the variable's value as the default.
	if *path == "" {
		*path = getenv("AGENTSTREAM_CONFIG")
	}
	var data []byte
	if *path != "" {
		var err error
		if data, err = os.ReadFile(*path); err != nil {
			return config.Config{}, fmt.Errorf("reading the config file: %w", err)
		}
	}
	var overrides []config.Override
	for _, o := range []struct{ key, env, flag, value string }{
		{"addr", "AGENTSTREAM_ADDR", "addr", *addr},
		{"debug_addr", "AGENTSTREAM_DEBUG_ADDR", "debug-addr", *debugAddr},
		{"database_url", "AGENTSTREAM_DATABASE_URL", "database-url", *databaseURL},
		{"redis_url", "AGENTSTREAM_REDIS_URL", "redis-url", *redisURL},
		{"model", "AGENTSTREAM_MODEL", "model", *model},
		{"openai.api_key", "OPENAI_API_KEY", "", ""},
		{"openai.base_url", "OPENAI_BASE_URL", "", ""},
	} {
		if v := getenv(o.env); v != "" {
			overrides = append(overrides, config.Override{Key: o.key, Value: v, Origin: "env " + o.env})
		}
		if o.value != "" {
			overrides = append(overrides, config.Override{Key: o.key, Value: o.value, Origin: "flag --" + o.flag})
		}
	}
	// An addr beyond loopback without identity in the config is checked
	// by server.New against the store's keys.
	cfg, err := config.LoadWith(*path, data, []config.ValidateOption{config.StoreMayHoldKeys()}, overrides...)
	if err != nil {
		return config.Config{}, err
	}
	logLevelVar.Set(level)
	return cfg, nil
}

var logLevelVar = new(slog.LevelVar)

// serve runs the server until ctx ends (the first SIGINT or SIGTERM), then
// shuts down gracefully; stopSignals restores the default signal handling.
func serve(ctx context.Context, stopSignals func(), args []string, getenv func(string) string, stderr io.Writer) int {
	cfg, err := loadConfig(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	var problems config.Problems
	if errors.As(err, &problems) {
		_, _ = fmt.Fprintf(stderr, "agentstream serve: invalid configuration (%s):\n%v\n", plural(len(problems), "problem"), err)
		return 2
	}
	if err != nil {
		_, _ = fmt.Fprintf(stderr, "agentstream serve: %v\n", err)
		return 2
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: logLevelVar}))
	gogc, from := setGC(getenv, debug.SetGCPercent)
	srv, err := server.New(ctx, cfg, logger)
	if err != nil {
		_, _ = fmt.Fprintf(stderr, "agentstream serve: %v\n", err)
		return 1
	}
	logger.Info("garbage collector", "GOGC", gogc, "from", from)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve() }()
	select {
	case err := <-errc:
		logger.Error("server stopped", "err", err)
		return 1
	case <-ctx.Done():
	}
	// A second signal now ends the process at once.
	stopSignals()
	logger.Info("shutting down: no new runs; running runs may finish (a second signal stops at once)", "deadline", srv.Config().HTTP.ShutdownTimeout)
	if err := srv.Shutdown(context.Background()); err != nil {
		logger.Error("shutdown", "err", err)
		return 1
	}
	if err := <-errc; err != nil {
		logger.Error("server stopped", "err", err)
		return 1
	}
	logger.Info("stopped")
	return 0
}

// defaultGOGC is the garbage collector's GOGC when the environment sets
// none. Between collections Go lets the heap grow by GOGC% of what is
// live (and of the goroutines' stacks); an open stream keeps about 42 KB
// of both, so Go's default of 100 let each take some 77 KiB at 1,000
// streams, 50 some 69 KiB, for no CPU per token the bench could tell
// from its spread (BENCHMARKS.md, "Round five"). A server whose heap is
// mostly something else (large histories, many tools) collects more
// often for it: GOGC=100 in the environment restores Go's default.
const defaultGOGC = 50

// setGC sets the collector's GOGC to defaultGOGC (through set, which is
// debug.SetGCPercent) unless the environment sets GOGC (Go's runtime has
// applied it then), and returns the GOGC that applies and where it is
// from, for the log.
func setGC(getenv func(string) string, set func(int) int) (gogc, from string) {
	if v := getenv("GOGC"); v != "" {
		return v, "the environment"
	}
	set(defaultGOGC)
	return strconv.Itoa(defaultGOGC), "agentstream's default (set GOGC to change it)"
}

// plural is "1 problem", "2 problems".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
