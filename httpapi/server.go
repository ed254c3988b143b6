// Package httpapi is agentstream's HTTP API: routes, authentication, the
// error → status table, and the SSE stream of a run in each wire format.
// Handlers are subscribers of the event log: they never run agents.
package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/agent"
)

// Options configures a Server.
type Options struct {
	// MaxBodyBytes limits request bodies. Default 1 MiB.
	MaxBodyBytes int64
	// BodyTimeout bounds how long a request's body may take to arrive:
	// past it the request is answered 408 and its connection closed.
	// Default 30s.
	BodyTimeout time.Duration
	// Heartbeat is the silence after which a stream gets a comment line.
	// Default 15s.
	Heartbeat time.Duration
	// StallTimeout bounds one write to a streaming client: a client that
	// stops reading for longer is disconnected, so it holds no goroutine or
	// buffer for ever. Its run goes on (or is cancelled, by on_disconnect);
	// it can resume with Last-Event-ID. Default 1m.
	StallTimeout time.Duration
	// Keys maps bearer tokens to user IDs. Empty means no authentication:
	// every request is LocalUser (serve refuses a non-loopback address then).
	// Used when Authenticator is nil.
	Keys map[string]string
	// Authenticator, when set, answers who is calling instead of Keys.
	Authenticator Authenticator
	// RunTokenSecret signs run tokens (POST /v1/runs/{id}/token); the
	// instances that share a store need the same. Default: random, for
	// this process only.
	RunTokenSecret []byte
	// RunTokenTTL is how long a run token opens its run's events.
	// Default 10m.
	RunTokenTTL time.Duration
	// CORS lets pages of other origins call the API. Default: off.
	CORS CORS
	// OnDisconnect is the policy of runs whose request names none:
	// OnDisconnectContinue (the default) or OnDisconnectCancel.
	OnDisconnect string
	// DisconnectGrace is how long a run whose policy is cancel goes on
	// after the client that started it left: a reader that comes to it
	// meanwhile (the client reconnecting with Last-Event-ID) keeps it.
	// Default 5s; negative: the run is cancelled at once.
	DisconnectGrace time.Duration
	// Presence, when set, shares the runs' readers with the other
	// instances, for DisconnectGrace: a reader there keeps a run too.
	Presence ReaderPresence
	// RemoteCancel, when set, asks the other instances to cancel a run
	// that is not running here (several instances share the store).
	RemoteCancel func(ctx context.Context, runID string) error
	// RemoteForget, when set, tells every instance (this one included)
	// that the thread with this key was deleted, once its delete has
	// committed: each calls its Server's ForgetThread.
	RemoteForget func(ctx context.Context, threadKey string) error
	Logger       *slog.Logger
	// RateLimiter, when set, bounds each user's authenticated requests
	// (config limits.requests_per_minute): past it they are answered 429
	// rate_limited. A limiter that fails lets the request through, with
	// a warning. Default: no limit.
	RateLimiter agentstream.RateLimiter
	// RequestsPerMinute is the limiter's rate, named in its refusals.
	RequestsPerMinute int
}

// LocalUser is the user of every request when no keys are configured.
const LocalUser = "local"

// Server serves the API.
type Server struct {
	runner *agent.Runner
	store  agentstream.Store
	log    agentstream.EventLog
	opts   Options
	logger *slog.Logger
	// auth answers who is calling; tokens are the run tokens.
	auth   Authenticator
	tokens *runTokens
	cors   *cors
	// cancelWait bounds how long a cancel request waits for the run to
	// end (10s; shorter in tests).
	cancelWait time.Duration
	// threads spares starting a run the read of its thread.
	threads *threadCache
	// readers are the runs' readers here, for DisconnectGrace.
	readers *localReaders
	// graces are the timers of runs whose client left (cancelAfterGrace);
	// graceRunning counts those firing; after Close none starts.
	graceMu      sync.Mutex
	graces       map[*time.Timer]struct{}
	graceClosed  bool
	graceRunning sync.WaitGroup
	// patterns are the routes Handler registered, but the catch-all.
	patterns []string
	// limiterWarned is when (Unix ns) a failing rate limiter was last
	// logged.
	limiterWarned atomic.Int64
}

// Routes returns the patterns of the routes Handler registers ("GET
// /v1/threads/{id}"), the health checks included and the catch-all that
// answers 404 and 405 left out: every other one authenticates its caller.
// Empty before Handler is called.
func (s *Server) Routes() []string { return slices.Clone(s.patterns) }

// New returns a Server.
func New(runner *agent.Runner, store agentstream.Store, log agentstream.EventLog, opts Options) *Server {
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 1 << 20
	}
	if opts.OnDisconnect == "" {
		opts.OnDisconnect = OnDisconnectContinue
	}
	if opts.DisconnectGrace == 0 {
		opts.DisconnectGrace = 5 * time.Second
	}
	if opts.BodyTimeout <= 0 {
		opts.BodyTimeout = 30 * time.Second
	}
	if opts.Heartbeat <= 0 {
		opts.Heartbeat = 15 * time.Second
	}
	if opts.StallTimeout <= 0 {
		opts.StallTimeout = time.Minute
	}
	if opts.RunTokenTTL <= 0 {
		opts.RunTokenTTL = 10 * time.Minute
	}
	s := &Server{runner: runner, store: store, log: log, opts: opts, logger: opts.Logger, auth: opts.Authenticator, cancelWait: 10 * time.Second,
		threads: newThreadCache(time.Now), readers: newLocalReaders(2 * max(opts.DisconnectGrace, 0)), graces: make(map[*time.Timer]struct{})}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	if s.auth == nil {
		s.auth = NewKeyAuthenticator(opts.Keys)
	}
	// The local user is served on loopback names only (guard.go).
	s.auth = localHostGuard{s.auth}
	s.tokens = newRunTokens(opts.RunTokenSecret, opts.RunTokenTTL)
	s.cors = newCORS(opts.CORS)
	return s
}

// Handler returns the API's routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	s.patterns = []string{"GET /healthz", "GET /readyz"}
	api := func(pattern string, h func(http.ResponseWriter, *http.Request, string)) {
		s.patterns = append(s.patterns, pattern)
		mux.Handle(pattern, &apiRoute{s: s, h: h})
	}
	// A route that starts a run: start's run is streamed (followRun).
	runs := func(pattern string, start func(http.ResponseWriter, *http.Request, string) *follow) {
		s.patterns = append(s.patterns, pattern)
		mux.Handle(pattern, &apiRoute{s: s, start: start})
	}
	api("GET /v1/agents", s.listAgents)
	api("POST /v1/threads", s.createThread)
	api("GET /v1/threads/{id}", s.getThread)
	api("GET /v1/threads/{id}/messages", s.listMessages)
	runs("POST /v1/threads/{id}/runs", s.startRun)
	api("GET /v1/runs/{id}", s.getRun)
	api("GET /v1/runs/{id}/events", s.attached(s.runEvents))
	api("POST /v1/runs/{id}/cancel", s.cancelRun)
	api("POST /v1/runs/{id}/token", s.runToken)
	runs("POST /v1/chat", s.startChatRun)
	api("GET /v1/threads", s.listThreads)
	api("PATCH /v1/threads/{id}", s.updateThread)
	api("DELETE /v1/threads/{id}", s.deleteThread)
	api("GET /v1/threads/{id}/runs", s.listRuns)
	runs("POST /ag-ui/{agent}", s.startAGUIRun)
	// The Vercel AI SDK's useChat, at its default path.
	runs("POST /api/chat", s.startUIChat)
	api("GET /api/chat/{id}/stream", s.uiChatStream)
	// OpenAI's Chat Completions API (openai.go).
	runs("POST /v1/chat/completions", s.startCompletion)
	api("GET /v1/models", s.listModels)
	api("GET /v1/models/{model}", s.getModel)
	// The catch-all matches every method of every path, so the mux never
	// answers 405 by itself: noRoute works out which methods the path has.
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { s.noRoute(w, r, mux) })
	// CORS comes first: a browser's preflight carries no credentials.
	return s.cors.wrap(&bodyDeadline{timeout: s.opts.BodyTimeout, next: mux})
}

// bodyDeadline gives a request's body its time to arrive (BodyTimeout),
// whether the handler reads it or net/http drops it. net/http lifts the
// deadline once the body is in, when it starts watching for the client
// leaving, so it never ends a stream (TestSlowBody checks). A type, not a
// HandlerFunc, and the deadline set in a function of its own: its frame
// is on the stack for the whole of a stream (see follow).
type bodyDeadline struct {
	timeout time.Duration
	next    http.Handler
}

func (b *bodyDeadline) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength != 0 {
		b.set(w)
	}
	b.next.ServeHTTP(w, r)
}

//go:noinline
func (b *bodyDeadline) set(w http.ResponseWriter) {
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(b.timeout))
}

// apiRoute is a route of the API but the health checks: a request that
// declares a body other than JSON is answered 415 first, then a caller
// who is refused (authenticated), both without reading the request's
// body; h gets the rest, with the caller's user, or, for a route that
// starts a run, start starts it and its stream is followed from here
// (followRun). One frame for the checks and the stream, not a
// middleware's and a handler's each: it is on the stack for the whole of
// a stream (see follow), and the checks are in admit, which returns
// first.
type apiRoute struct {
	s     *Server
	h     func(http.ResponseWriter, *http.Request, string)
	start func(http.ResponseWriter, *http.Request, string) *follow
}

func (a *apiRoute) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r, user := a.s.admit(w, r)
	switch {
	case r == nil:
	case a.start == nil:
		a.h(w, r, user)
	default:
		if f := a.start(w, r, user); f != nil {
			a.s.followRun(w, r, f)
		}
	}
}

// admit checks a request to an API route (see apiRoute) and returns it
// (identify may change it) with its caller's user, or answers it and
// returns nil.
//
//go:noinline
func (s *Server) admit(w http.ResponseWriter, r *http.Request) (*http.Request, string) {
	if err := checkContentType(r); err != nil {
		skipBody(w, r)
		s.writeError(w, r, err)
		return nil, ""
	}
	return s.authorize(w, r)
}

// skipBody makes an answer given without reading the request's body
// leave at once: net/http would otherwise read what is left of a small
// body before sending it, waiting for a client that sends it slowly. The
// connection is closed after the answer.
func skipBody(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength == 0 {
		return
	}
	w.Header().Set("Connection", "close")
	_ = http.NewResponseController(w).SetReadDeadline(time.Now())
}

// routeMethods are the methods of the API's routes (HEAD comes with GET).
var routeMethods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPatch, http.MethodDelete}

// noRoute answers a request no route took: 405 with Allow when its path
// is a route's under another method, else 404.
func (s *Server) noRoute(w http.ResponseWriter, r *http.Request, mux *http.ServeMux) {
	var allow []string
	for _, m := range routeMethods {
		if m == r.Method {
			continue
		}
		probe := &http.Request{Method: m, URL: r.URL, Host: r.Host, Header: http.Header{}}
		if _, pattern := mux.Handler(probe); pattern != "" && pattern != "/" {
			allow = append(allow, m)
		}
	}
	skipBody(w, r)
	if len(allow) == 0 {
		s.writeError(w, r, agentstream.Errorf(agentstream.CodeNotFound, "no route for %s %s", r.Method, r.URL.Path))
		return
	}
	w.Header().Set("Allow", strings.Join(allow, ", "))
	s.writeError(w, r, agentstream.Errorf(CodeMethodNotAllowed, "%s does not take %s; it takes %s", r.URL.Path, r.Method, strings.Join(allow, ", ")))
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.runner.Draining() {
		w.Header().Set("Retry-After", "5")
		s.writeError(w, r, agentstream.Errorf(agentstream.CodeUnavailable, "the server is shutting down"))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		s.writeError(w, r, agentstream.Wrap(agentstream.CodeUnavailable, err, "the store cannot be reached"))
		return
	}
	if p, ok := s.log.(interface{ Ping(context.Context) error }); ok {
		if err := p.Ping(ctx); err != nil {
			s.writeError(w, r, agentstream.Wrap(agentstream.CodeUnavailable, err, "the event log cannot be reached"))
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// timeNow is the clock of thread timestamps, in UTC, to the microsecond
// the stores keep: a thread answered when created reads back the same.
func timeNow() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }
