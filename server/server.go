// Package server wires agentstream together from a config: the store, the
// event log, the model (or the simulated model), the runner and the HTTP
// API. cmd/agentstream and the end-to-end tests both start it.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/agent"
	"github.com/agentstream/agentstream/config"
	"github.com/agentstream/agentstream/httpapi"
	"github.com/agentstream/agentstream/jwtauth"
	"github.com/agentstream/agentstream/mcp"
	"github.com/agentstream/agentstream/memlimit"
	"github.com/agentstream/agentstream/memlog"
	"github.com/agentstream/agentstream/openai"
	"github.com/agentstream/agentstream/postgres"
	"github.com/agentstream/agentstream/redislog"
	"github.com/agentstream/agentstream/sim"
	"github.com/agentstream/agentstream/sqlite"
	"github.com/agentstream/agentstream/tools"
)

// Server is a configured agentstream server.
type Server struct {
	cfg    config.Config
	logger *slog.Logger
	store  agentstream.Store
	log    agentstream.EventLog
	// mem is the in-process log, redis the shared one; one of them is log.
	mem   *memlog.Log
	redis *redislog.Log
	// presence shares the runs' readers with the other instances, with
	// redis.
	presence *redislog.Presence
	// owner names this instance in the runs it starts, with redis.
	owner  string
	runner *agent.Runner
	api    *httpapi.Server
	sim    *sim.Running
	http   *http.Server
	ln     net.Listener
	// debug serves the profiler when cfg.DebugAddr is set.
	debug     *http.Server
	debugAddr string

	// mcp is the MCP servers whose tools agents call; nil for none.
	mcp *mcp.Set
	// jwt verifies JWT bearer tokens when auth.jwt is set.
	jwt *jwtauth.Verifier
}

// New builds a server from cfg (defaults applied, then validated) and
// listens on cfg.Addr. Nothing is served until Serve. The options add a Go
// program's own tools and models (WithTools, WithModel…).
func New(ctx context.Context, cfg config.Config, logger *slog.Logger, opts ...Option) (_ *Server, err error) {
	cfg = cfg.WithDefaults()
	// runs.max_concurrent, unset, is what the open-file limit allows.
	nofile, nofileKnown := openFileLimit()
	if !nofileKnown {
		nofile = ^uint64(0) // no such limit: the default's cap applies
	}
	cfg = cfg.WithFileLimit(nofile)
	o := newOptions(opts)
	if err := errors.Join(o.errs...); err != nil {
		return nil, err
	}
	if err := cfg.Validate(o.validation()...); err != nil {
		return nil, fmt.Errorf("invalid configuration:\n%w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, logger: logger}
	defer func() {
		if err != nil {
			s.close()
		}
	}()

	if s.store, err = openStore(ctx, cfg.DatabaseURL); err != nil {
		return nil, err
	}
	if err := s.checkAddr(ctx, cfg); err != nil {
		return nil, err
	}
	// A SQLite file has one serve (it holds the file's lock), and without
	// Redis (an in-process log nobody else can read) a server is its
	// store's only user: runs left queued or running belonged to a process
	// that died. Their questions and checkpointed partial answers stay;
	// the runs end interrupted. On PostgreSQL with Redis, runs held by
	// others are theirs: the runner's leases find those of dead instances.
	var recovered []agentstream.Run
	if !isPostgres(cfg.DatabaseURL) || cfg.RedisURL == "" {
		recovered, err = s.store.InterruptRuns(ctx, time.Now().UTC(), agentstream.ErrorInfo{
			Code: agentstream.CodeInterrupted, Message: "the server stopped before the run ended",
		})
		if err != nil {
			return nil, fmt.Errorf("recovering runs of a previous process: %w", err)
		}
		if len(recovered) > 0 {
			logger.Warn("runs left unfinished by a previous process were marked interrupted", "runs", len(recovered))
		}
	}
	if cfg.RedisURL == "" {
		s.mem = memlog.New(memlog.Options{
			Retention: cfg.EventLog.Retention, MaxRunBytes: cfg.EventLog.MaxRunBytes, MaxTotalBytes: cfg.EventLog.MaxTotalBytes,
			MaxFinishedBytes: cfg.EventLog.MaxFinishedBytes,
		})
		s.log = s.mem
		// The recovered runs' logs died with their process: readers get
		// their ends from the store.
		recovered = nil
	} else {
		s.redis, err = redislog.Open(ctx, cfg.RedisURL, redislog.Options{
			Retention: cfg.EventLog.Retention, MaxRunBytes: cfg.EventLog.MaxRunBytes,
			Coalesce: cfg.EventLog.Coalesce, Prefix: cfg.EventLog.RedisPrefix, Logger: logger,
		})
		if err != nil {
			return nil, fmt.Errorf("opening the Redis event log: %w", err)
		}
		s.log = s.redis
		s.owner = instanceName()
	}

	baseURL, apiKey := cfg.OpenAI.BaseURL, cfg.OpenAI.APIKey
	if cfg.UsesSim() && o.model == nil {
		s.sim, err = sim.Start("127.0.0.1:0", sim.Options{Tokens: cfg.Sim.Tokens, Pace: cfg.Sim.Pace, TTFT: cfg.Sim.TTFT})
		if err != nil {
			return nil, fmt.Errorf("starting the simulated model: %w", err)
		}
		baseURL, apiKey = s.sim.URL(), ""
		logger.Warn("neither OPENAI_API_KEY nor OPENAI_BASE_URL is set: using the simulated model; every reply is simulated, not from a real model",
			"sim_url", baseURL)
	}
	// A model given with WithModel replaces the openai: block.
	model := o.model
	if model == nil {
		model, err = openai.New(openai.Config{
			APIKey: apiKey, BaseURL: baseURL,
			MaxRetries: *cfg.OpenAI.MaxRetries, DisableRetries: *cfg.OpenAI.MaxRetries == 0,
			IdleTimeout: cfg.OpenAI.IdleTimeout,
			// The in-process simulator speaks HTTP/2 without TLS.
			H2C: cfg.OpenAI.H2C || cfg.UsesSim(),
		})
		if err != nil {
			return nil, fmt.Errorf("model client: %w", err)
		}
	}
	endpoints, err := modelEndpoints(cfg, logger)
	if err != nil {
		return nil, err
	}

	toolset, err := toolsOf(cfg, logger)
	if err != nil {
		return nil, fmt.Errorf("tools: %w", err)
	}
	// The configured secrets a tool echoes are masked before the model,
	// the stream or the store see them.
	secrets := tools.NewSecrets(cfg.Secrets()...)
	// Every MCP server is connected before the server listens (each
	// within its connect_timeout); a required one that fails, or a clash
	// of tool names, stops the start. Their tools may take no name of the
	// config's tools or those a Go program adds.
	taken := toolset.Names()
	for _, t := range o.tools {
		taken = append(taken, t.Spec().Name)
	}
	if s.mcp, err = startMCP(ctx, cfg, taken, logger); err != nil {
		return nil, fmt.Errorf("MCP servers:\n%w", err)
	}
	deps := agent.Deps{
		Store: s.store, Log: s.log, Model: model, Models: endpoints, Agents: cfg.Agents,
		Tools: toolset, Sources: s.mcp.Sources(), Mask: secrets.Mask, Logger: logger,
	}
	if err := o.addTo(&deps); err != nil {
		return nil, err
	}
	s.runner, err = agent.New(agent.Config{
		MaxConcurrentRuns: cfg.Runs.MaxConcurrent, MaxQueuedRuns: queueSize(*cfg.Runs.MaxQueued),
		ToolTimeout: cfg.Runs.ToolTimeout, MaxParallelTools: cfg.Runs.MaxParallelTools, CheckpointInterval: cfg.Runs.CheckpointInterval,
		DefaultModel: cfg.Model, DefaultAgent: cfg.DefaultAgent,
		Owner: s.owner, LeaseTTL: cfg.Runs.LeaseTTL, FinalizeTimeout: cfg.Runs.FinalizeTimeout,
		Limits: agent.Limits{
			ConcurrentRuns: cfg.Limits.ConcurrentRuns, QueuedRuns: cfg.Limits.QueuedRuns, DailyTokens: cfg.Limits.DailyTokens,
		},
	}, deps)
	if err != nil {
		return nil, fmt.Errorf("agents: %w", err)
	}
	// The recovered runs' logs are in Redis, with readers perhaps waiting:
	// each gets its terminal event.
	for _, run := range recovered {
		s.runner.EndInterrupted(ctx, run)
	}

	auth, err := s.identities(cfg, logger)
	if err != nil {
		return nil, err
	}
	var remoteCancel, remoteForget func(context.Context, string) error
	var presence httpapi.ReaderPresence
	if s.redis != nil {
		// A cancel sent to another instance reaches this one's runner.
		s.redis.OnCancel(func(runID string) { s.runner.Cancel(runID) })
		remoteCancel = s.redis.RequestCancel
		remoteForget = s.redis.RequestForgetThread
		// A reader on another instance keeps a run whose client left.
		if cfg.Runs.DisconnectGrace > 0 {
			s.presence = s.redis.Presence(cfg.Runs.DisconnectGrace)
			presence = s.presence
		}
	}
	// Each user's request rate: shared by the instances in Redis, else
	// this instance's own.
	var limiter agentstream.RateLimiter
	if rpm := cfg.Limits.RequestsPerMinute; rpm > 0 {
		if s.redis != nil {
			limiter = s.redis.RateLimiter(rpm, cfg.Limits.Burst)
		} else {
			limiter = memlimit.New(rpm, cfg.Limits.Burst)
		}
	}
	capacity := []any{"runs.max_concurrent", cfg.Runs.MaxConcurrent, "runs.max_queued", *cfg.Runs.MaxQueued}
	if nofileKnown {
		capacity = append(capacity, "open_file_limit", nofile)
	}
	if s.mem != nil {
		capacity = append(capacity, "event_log.max_total_bytes", cfg.EventLog.MaxTotalBytes,
			"event_log.max_finished_bytes", cfg.EventLog.MaxFinishedBytes, "event_log.retention", cfg.EventLog.Retention)
	}
	logger.Info("capacity", capacity...)
	if nofileKnown && uint64(2*cfg.Runs.MaxConcurrent+*cfg.Runs.MaxQueued+config.ReservedFiles) > nofile {
		logger.Warn("the open-file limit is below what runs.max_concurrent and runs.max_queued may need (2 per running run with an HTTP/1.1 upstream, 1 per queued run, 256 for the rest): raise it (ulimit -n, LimitNOFILE=) or lower them",
			"open_file_limit", nofile, "runs.max_concurrent", cfg.Runs.MaxConcurrent, "runs.max_queued", *cfg.Runs.MaxQueued)
	}
	if l := cfg.Limits; l != (config.Limits{}) {
		logger.Info("per-user limits", "requests_per_minute", l.RequestsPerMinute, "burst", l.Burst, "rate_shared", s.redis != nil,
			"concurrent_runs", l.ConcurrentRuns, "queued_runs", l.QueuedRuns, "daily_tokens", l.DailyTokens)
	}
	s.api = httpapi.New(s.runner, s.store, s.log, httpapi.Options{
		RateLimiter: limiter, RequestsPerMinute: cfg.Limits.RequestsPerMinute,
		RemoteCancel: remoteCancel, RemoteForget: remoteForget, DisconnectGrace: cfg.Runs.DisconnectGrace, Presence: presence,
		MaxBodyBytes: cfg.HTTP.MaxBodyBytes, BodyTimeout: cfg.HTTP.BodyTimeout, Heartbeat: cfg.HTTP.Heartbeat, StallTimeout: cfg.HTTP.StallTimeout,
		OnDisconnect: cfg.Runs.OnDisconnect, Logger: logger, Authenticator: auth,
		RunTokenSecret: []byte(cfg.Auth.RunTokens.Secret), RunTokenTTL: cfg.Auth.RunTokens.TTL,
		CORS: httpapi.CORS{AllowedOrigins: cfg.HTTP.CORS.AllowedOrigins, AllowedHeaders: cfg.HTTP.CORS.AllowedHeaders},
	})
	if s.redis != nil {
		// A thread deleted on any instance leaves every instance's caches.
		s.redis.OnThreadForgotten(s.api.ForgetThread)
	}
	if cfg.RedisURL != "" && cfg.Auth.RunTokens.Secret == "" {
		logger.Warn("auth.run_tokens.secret is not set: each instance signs run tokens with its own random secret, so a token works only on the instance that issued it; set the same secret on every instance")
	}
	s.http = &http.Server{
		Handler:           s.api.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		// Request bodies get http.body_timeout, in the API.
		// No write timeout: streams last as long as their runs.
		IdleTimeout: 2 * time.Minute,
		ErrorLog:    slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	if s.ln, err = net.Listen("tcp", cfg.Addr); err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	if cfg.DebugAddr != "" {
		dln, err := net.Listen("tcp", cfg.DebugAddr)
		if err != nil {
			return nil, fmt.Errorf("listen on debug_addr %s: %w", cfg.DebugAddr, err)
		}
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		s.debug = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		s.debugAddr = dln.Addr().String()
		go func() { _ = s.debug.Serve(dln) }() // ends with Shutdown's Close
		logger.Info("profiler listening", "addr", "http://"+dln.Addr().String()+"/debug/pprof/")
	}
	return s, nil
}

// queueSize maps the config's queue size (0: none) to the runner's
// (negative: none, 0: default).
func queueSize(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

// isPostgres reports whether a database URL names PostgreSQL.
func isPostgres(url string) bool {
	return strings.HasPrefix(url, "postgres://") || strings.HasPrefix(url, "postgresql://")
}

// openStore opens the store a database URL names.
func openStore(ctx context.Context, url string) (agentstream.Store, error) {
	switch {
	case strings.HasPrefix(url, "postgres://"), strings.HasPrefix(url, "postgresql://"):
		st, err := postgres.Open(ctx, url)
		if err != nil {
			return nil, fmt.Errorf("opening the PostgreSQL store: %w", err)
		}
		return st, nil
	case strings.Contains(url, "://") && !strings.HasPrefix(url, "sqlite://"):
		return nil, fmt.Errorf("database_url %q: unsupported scheme (want a SQLite file path, sqlite://PATH or postgres://…)", redactURL(url))
	}
	// One server per SQLite file: a second one would take the first's
	// running runs for a dead process's and interrupt them at start-up.
	st, err := sqlite.OpenWith(ctx, strings.TrimPrefix(url, "sqlite://"), sqlite.Options{Exclusive: true})
	if inUse := (*sqlite.InUseError)(nil); errors.As(err, &inUse) {
		return nil, fmt.Errorf("one agentstream serve per SQLite file: %w; stop that serve, or give this one another database_url", err)
	}
	if err != nil {
		return nil, err
	}
	return st, nil
}

// redactURL hides the password of a URL, for messages.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(an unparsable URL)"
	}
	return u.Redacted()
}

// Addr is the address the server listens on (with the real port when the
// configured one was 0).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// DebugAddr is the profiler's address (with its real port), or "".
func (s *Server) DebugAddr() string { return s.debugAddr }

// Routes returns the patterns of the API's routes (httpapi.Server.Routes).
func (s *Server) Routes() []string { return s.api.Routes() }

// Config is the server's defaulted configuration.
func (s *Server) Config() config.Config { return s.cfg }

// Serve serves until Shutdown. It returns nil after a clean shutdown.
func (s *Server) Serve() error {
	s.logger.Info("agentstream listening", "addr", "http://"+s.Addr(), "model", s.cfg.Model,
		"simulated", s.sim != nil, "database", redactURL(s.cfg.DatabaseURL))
	if err := s.http.Serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Shutdown stops taking runs, lets running runs finish until the
// configured shutdown timeout (or ctx, whichever ends first), interrupts
// the rest, lets every open stream receive its terminal event, then
// closes the listener, the store and the simulated model.
func (s *Server) Shutdown(ctx context.Context) error {
	drainCtx, cancel := context.WithTimeout(ctx, s.cfg.HTTP.ShutdownTimeout)
	defer cancel()
	runErr := s.runner.Shutdown(drainCtx)
	if runErr != nil {
		s.logger.Warn("runs still going at the shutdown deadline were interrupted")
	}
	// Every run has ended: the disconnect graces left have nothing to do.
	s.api.Close()
	// Every run has its terminal event now; streams end on their own.
	httpCtx, cancelHTTP := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancelHTTP()
	httpErr := s.http.Shutdown(httpCtx)
	s.close()
	if errors.Is(runErr, context.DeadlineExceeded) {
		runErr = nil // interrupting at the deadline is the documented behaviour
	}
	return errors.Join(runErr, httpErr)
}

func (s *Server) close() {
	if s.debug != nil {
		_ = s.debug.Close() // the profiler's connections end with the process
	}
	if s.ln != nil {
		_ = s.ln.Close() // already closed after http.Shutdown
	}
	if s.store != nil {
		if err := s.store.Close(); err != nil {
			s.logger.Warn("closing the store", "err", err)
		}
	}
	if s.sim != nil {
		s.sim.Close()
	}
	// The MCP servers' sessions end and their children stop.
	s.mcp.Close()
	if s.jwt != nil {
		s.jwt.Close()
	}
	if s.presence != nil {
		s.presence.Close()
	}
	if s.redis != nil {
		if err := s.redis.Close(); err != nil {
			s.logger.Warn("closing the Redis event log", "err", err)
		}
	}
}

// identities returns the Authenticator of cfg.Auth: API keys, service
// keys and JWTs, one user namespace (docs/security.md, "Identities").
func (s *Server) identities(cfg config.Config, logger *slog.Logger) (httpapi.Authenticator, error) {
	keys := make(map[string]string, len(cfg.Auth.Keys))
	for _, k := range cfg.Auth.Keys {
		keys[k.Key] = k.User
	}
	services := make(map[string]string, len(cfg.Auth.ServiceKeys))
	for _, k := range cfg.Auth.ServiceKeys {
		services[k.Key] = k.Name
	}
	var verifier httpapi.TokenVerifier
	if j := cfg.Auth.JWT; j.Enabled() {
		v, err := jwtauth.New(jwtauth.Config{
			Secret: j.Secret, JWKSURL: j.JWKSURL, Issuer: j.Issuer, Audience: j.Audience, Leeway: j.Leeway, UserClaim: j.UserClaim,
			OnRefreshError: func(err error) {
				logger.Warn("fetching auth.jwt.jwks_url failed: tokens signed by keys not yet fetched are refused", "url", redactURL(j.JWKSURL), "err", err)
			},
		})
		if err != nil {
			return nil, fmt.Errorf("auth.jwt: %w", err)
		}
		s.jwt, verifier = v, v
	}
	if n := len(cfg.Auth.Keys); n > 0 {
		// Never the keys themselves: their number only.
		logger.Warn("auth.keys holds API keys in plain text in the config; keys stored hashed can be created, listed and revoked without a restart: agentstream keys create --user NAME",
			"keys", n)
	}
	ids := httpapi.NewIdentities(keys, services, verifier, jwtauth.LooksLikeJWT)
	if ks, ok := s.store.(agentstream.KeyStore); ok {
		ids.WithKeyStore(ks)
	}
	return ids, nil
}

// checkAddr refuses to listen beyond loopback with no identity: none in
// the config (Validate, with StoreMayHoldKeys, left this to New) and no
// key in the store, ever. Otherwise every caller would be the local user.
func (s *Server) checkAddr(ctx context.Context, cfg config.Config) error {
	if cfg.Auth.HasIdentity() || cfg.ListensOnLoopback() {
		return nil
	}
	if ks, ok := s.store.(agentstream.KeyStore); ok {
		has, err := ks.HasKeys(ctx)
		if err != nil {
			return fmt.Errorf("checking the store for API keys: %w", err)
		}
		if has {
			return nil
		}
	}
	return fmt.Errorf("addr %q is not a loopback address, and no identity is configured nor any API key stored: create one with agentstream keys create --user NAME, add auth.keys, auth.service_keys or auth.jwt to the config, or listen on 127.0.0.1", cfg.Addr)
}

// EventLogStats returns how many runs' logs the in-process event log holds
// and the bytes of their events, as its caps count them.
// It reports zeros with the Redis log.
func (s *Server) EventLogStats() (runs int, bytes int64) {
	if s.mem == nil {
		return 0, 0
	}
	return s.mem.Stats()
}

// instanceName names this process in the runs it owns: host, pid and a
// random part, so that a restarted process is a new owner.
func instanceName() string {
	host, err := os.Hostname()
	if err != nil {
		host = "host"
	}
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), strings.ToLower(agentstream.NewID("")[:6]))
}

// Load returns how many runs execute and wait now.
func (s *Server) Load() (running, queued int) { return s.runner.Load() }
