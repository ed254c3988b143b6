package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/agentstream/agentstream/config"
	"github.com/agentstream/agentstream/server"
)

// loadConfig reads the config file, then the environment, then the flags;
// each overrides the one before.
func loadConfig(args []string, getenv func(string) string, stderr io.Writer) (config.Config, error) {
	fs := flag.NewFlagSet("agentstream serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		path        = fs.String("config", getenv("AGENTSTREAM_CONFIG"), "YAML config file (env AGENTSTREAM_CONFIG)")
		addr        = fs.String("addr", "", "listen address (env AGENTSTREAM_ADDR; default 127.0.0.1:8080)")
		databaseURL = fs.String("database-url", "", "SQLite file path (env AGENTSTREAM_DATABASE_URL; default agentstream.db)")
		redisURL    = fs.String("redis-url", "", "Redis URL for the shared event log (env AGENTSTREAM_REDIS_URL)")
		model       = fs.String("model", "", "default upstream model (env AGENTSTREAM_MODEL; default gpt-4o-mini, or sim without OPENAI_API_KEY)")
		logLevel    = fs.String("log-level", "info", "log level: debug, info, warn or error")
		debugAddr   = fs.String("debug-addr", "", "serve the Go profiler (/debug/pprof/) on this loopback address (env AGENTSTREAM_DEBUG_ADDR; default off)")
	)
	if err := fs.Parse(args); err != nil {
		return config.Config{}, err
	}
	if fs.NArg() > 0 {
		return config.Config{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	var cfg config.Config
	if *path != "" {
		data, err := os.ReadFile(*path)
		if err != nil {
			return config.Config{}, fmt.Errorf("reading the config file: %w", err)
		}
		if cfg, err = config.Decode(data); err != nil {
			return config.Config{}, fmt.Errorf("%s: %w", *path, err)
		}
	}
	for _, o := range []struct {
		dst       *string
		env, flag string
	}{
		{&cfg.Addr, "AGENTSTREAM_ADDR", *addr},
		{&cfg.DebugAddr, "AGENTSTREAM_DEBUG_ADDR", *debugAddr},
		{&cfg.DatabaseURL, "AGENTSTREAM_DATABASE_URL", *databaseURL},
		{&cfg.RedisURL, "AGENTSTREAM_REDIS_URL", *redisURL},
		{&cfg.Model, "AGENTSTREAM_MODEL", *model},
		{&cfg.OpenAI.APIKey, "OPENAI_API_KEY", ""},
		{&cfg.OpenAI.BaseURL, "OPENAI_BASE_URL", ""},
	} {
		if v := getenv(o.env); v != "" {
			*o.dst = v
		}
		if o.flag != "" {
			*o.dst = o.flag
		}
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return config.Config{}, fmt.Errorf("--log-level: %w", err)
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
	if err != nil {
		_, _ = fmt.Fprintf(stderr, "agentstream serve: %v\n", err)
		return 2
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: logLevelVar}))
	srv, err := server.New(ctx, cfg, logger)
	if err != nil {
		_, _ = fmt.Fprintf(stderr, "agentstream serve: %v\n", err)
		return 1
	}
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
