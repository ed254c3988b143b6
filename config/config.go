// Package config is agentstream's configuration: one documented struct,
// its defaults, its validation, and decoding from YAML. Reading files,
// the environment's overrides and flags happens in cmd/ only; Load reads
// the variables a file's ${NAME} references name (see expand.go).
package config

import (
	_ "embed"
	"fmt"
	"net"
	"slices"
	"strings"
	"text/template"
	"time"

	"github.com/goccy/go-yaml"

	"github.com/agentstream/agentstream"
)

// Config is the whole configuration of `agentstream serve`. Each field says
// its default; the YAML key is the field's snake_case name.
type Config struct {
	// Addr is the listen address. Default "127.0.0.1:8080".
	// Env AGENTSTREAM_ADDR, flag --addr.
	Addr string `yaml:"addr"`
	// DebugAddr, when set, serves Go's profiler (/debug/pprof/) on its
	// own listener, for finding where the server's time goes. It must be
	// a loopback address. Default empty: off. Env AGENTSTREAM_DEBUG_ADDR.
	DebugAddr string `yaml:"debug_addr"`
	// DatabaseURL selects the store: a SQLite file path (or sqlite://PATH),
	// or a postgres:// URL. Default "agentstream.db" in the working
	// directory.
	// Env AGENTSTREAM_DATABASE_URL, flag --database-url.
	DatabaseURL string `yaml:"database_url"`
	// RedisURL selects the Redis event log, shared by several instances
	// (with their runs' leases and cancel requests). Default empty: the
	// in-process log, one instance. Env AGENTSTREAM_REDIS_URL, flag
	// --redis-url.
	RedisURL string `yaml:"redis_url"`
	// Model is the upstream model of agents that name none. Default
	// "gpt-4o-mini", or "sim" when the simulated model is used.
	// Env AGENTSTREAM_MODEL, flag --model.
	Model string `yaml:"model"`
	// OpenAI is the model endpoint of agents that name no endpoint.
	OpenAI OpenAI `yaml:"openai"`
	// Models are more model endpoints, each named, that agents pick with
	// endpoint: (see ModelEndpoint and docs/models.md). Default none.
	Models []ModelEndpoint `yaml:"models"`
	// Sim configures the in-process simulated model used when neither
	// OpenAI.APIKey nor OpenAI.BaseURL is set.
	Sim Sim `yaml:"sim"`
	// Auth lists the identities; none (and no key stored with agentstream
	// keys create) means one local user and a loopback address only.
	Auth Auth `yaml:"auth"`
	// Runs bounds the work of the runner.
	Runs Runs `yaml:"runs"`
	// Limits bound what each user may use. Default: no limits.
	Limits Limits `yaml:"limits"`
	// HTTP tunes the HTTP server.
	HTTP HTTP `yaml:"http"`
	// EventLog tunes the in-process event log.
	EventLog EventLog `yaml:"event_log"`
	// DefaultAgent is the agent of threads and runs that name none.
	// Default "assistant".
	DefaultAgent string `yaml:"default_agent"`
	// Agents are declared here; they are added to the built-in "assistant"
	// (an agent of that name replaces it).
	Agents []agentstream.Agent `yaml:"agents"`
	// Tools are tools declared here (HTTP tools), which agents name in
	// their tools beside the built-in ones. Default none. See Tool and
	// docs/tools.md.
	Tools []Tool `yaml:"tools"`
	// MCPServers are the MCP servers whose tools agents may call
	// (agents[].mcp_servers names them). Default none. See MCPServer and
	// docs/mcp.md.
	MCPServers []MCPServer `yaml:"mcp_servers"`

	// src is where the settings came from, when Load or Decode read them,
	// so that Validate can say on which line a problem is.
	src *source
}

// OpenAI is the OpenAI-compatible endpoint.
type OpenAI struct {
	// APIKey authenticates to the endpoint. Default empty: no
	// Authorization header. With neither APIKey nor BaseURL set, the
	// server runs the simulated model. Env OPENAI_API_KEY. May be
	// written ${NAME}, read from the environment; a secret.
	APIKey string `yaml:"api_key" expand:"key"`
	// BaseURL of the API. Default "https://api.openai.com/v1" when an
	// APIKey is set; Ollama, vLLM and llama.cpp's server work too, with or
	// without a key. Env OPENAI_BASE_URL. May hold ${NAME}.
	BaseURL string `yaml:"base_url" expand:"plain"`
	// MaxRetries of 429/5xx/connection failures before the first token.
	// Default 2.
	MaxRetries *int `yaml:"max_retries"`
	// IdleTimeout fails a call whose stream is silent this long. Default 60s.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// H2C speaks HTTP/2 without TLS to an http:// base_url known to
	// accept it (agentstream sim does): calls share connections, as they
	// do with an https:// API. Default false.
	H2C bool `yaml:"h2c"`
}

// Sim configures the simulated model.
type Sim struct {
	// Tokens is the reply length. Default 40.
	Tokens int `yaml:"tokens"`
	// Pace is the time between tokens. Default 30ms.
	Pace time.Duration `yaml:"pace"`
	// TTFT is the time to the first token. Default 200ms.
	TTFT time.Duration `yaml:"ttft"`
}

// Auth holds the API keys.
type Auth struct {
	// Keys maps bearer tokens to users, in plain text (serve warns of
	// them at start): keys stored hashed with agentstream keys create
	// need no restart to add or revoke. Default none.
	Keys []APIKey `yaml:"keys"`
	// RunTokens are the short-lived tokens of POST /v1/runs/{id}/token,
	// with which a browser's EventSource reads a run's events.
	RunTokens RunTokens `yaml:"run_tokens"`
	// JWT accepts JWT bearer tokens (config/identity.go). Default off.
	JWT JWT `yaml:"jwt"`
	// ServiceKeys are the keys of trusted backends, which name the end
	// user in X-Agentstream-User. Default none.
	ServiceKeys []ServiceKey `yaml:"service_keys"`
}

// RunTokens configures run tokens (docs/protocol.md, "Run tokens").
type RunTokens struct {
	// Secret signs the tokens (HMAC-SHA256), at least 32 characters.
	// Every instance sharing a store needs the same, so that a token one
	// issued opens the run on any. Default empty: a random secret per
	// process, enough for one instance (tokens do not survive a restart).
	// May be written ${NAME}, read from the environment; a secret.
	Secret string `yaml:"secret" expand:"key"`
	// TTL is how long a token opens its run's events: a stream opened
	// before it expires goes on; a reconnection after it needs a new
	// token. Default 10m.
	TTL time.Duration `yaml:"ttl"`
}

// APIKey is one bearer token and the user it authenticates. Key may be
// written ${NAME}, read from the environment; it is a secret.
type APIKey struct {
	Key  string `yaml:"key" expand:"key"`
	User string `yaml:"user"`
}

// Runs bounds the runner.
type Runs struct {
	// MaxConcurrent is how many runs execute at once. Default: what the
	// process's open-file limit allows (WithFileLimit), at least 64 and at
	// most 4,096: (limit − max_queued − 256) ÷ 2. A running run holds two
	// descriptors at most (its client's connection, and its upstream's
	// over HTTP/1.1; HTTP/2 upstreams share one), a queued run one (its
	// client's), and 256 are kept for the listener, the store, Redis, MCP
	// servers and tool calls. With the hard limits Linux systems commonly
	// give (Go raises the soft limit to the hard one at start; systemd
	// gives 524,288, Docker 1,048,576) that is 4,096, which serves a
	// thousand users at once with room to spare; at about 110 KiB
	// per open stream (BENCHMARKS.md), 4,096 streams take about 450 MiB.
	// See docs/deploy.md, "Sizing".
	MaxConcurrent int `yaml:"max_concurrent"`
	// MaxQueued is how many runs may wait for a worker; past it requests
	// get 429. Default 1024; 0 means no queue.
	MaxQueued *int `yaml:"max_queued"`
	// ToolTimeout bounds each tool call. Default 30s.
	ToolTimeout time.Duration `yaml:"tool_timeout"`
	// CheckpointInterval is how often a streaming answer is saved as a
	// partial message (it is also saved at every tool call), so a killed
	// process loses at most this much of it. Default 2s.
	CheckpointInterval time.Duration `yaml:"checkpoint_interval"`
	// OnDisconnect is what a run does when the client that started it
	// leaves, for requests that do not say: "continue" (the run finishes
	// and is saved; the client can come back) or "cancel". Default
	// "continue".
	OnDisconnect string `yaml:"on_disconnect"`
	// DisconnectGrace is how long a run whose on_disconnect is "cancel"
	// goes on after the client that started it left: a client that comes
	// back within it (GET /v1/runs/{id}/events with Last-Event-ID), on any
	// instance, keeps the run, as does any other reader of the run
	// meanwhile. Default 5s; negative: cancelled at once.
	DisconnectGrace time.Duration `yaml:"disconnect_grace"`
	// MaxParallelTools bounds the tool calls of one model turn that run
	// at once; the others wait for a place. A call that reaches its
	// timeout gives its place back even if the tool ignores its
	// cancellation and goes on. Default 8.
	MaxParallelTools int `yaml:"max_parallel_tools"`
	// LeaseTTL is how long a run's lease lasts without renewal, with
	// redis_url set (several instances): when an instance dies, another
	// ends its runs as interrupted within about this long. Leases are
	// renewed every third of it. Default 15s.
	LeaseTTL time.Duration `yaml:"lease_ttl"`
	// FinalizeTimeout is how long the end of a run keeps trying a store
	// that fails to save it (a database that went away) before its stream
	// ends failed ("the run's result could not be saved"); the end is then
	// saved, as failed with its messages, as soon as the store is back, so
	// that its thread takes runs again. Default 30s.
	FinalizeTimeout time.Duration `yaml:"finalize_timeout"`
}

// Limits bound what each user (the authenticated user id) may use. Every
// limit is off at 0, its default. Past one, a request is answered 429
// with Retry-After and an error code naming the limit (docs/security.md,
// "Limits").
type Limits struct {
	// RequestsPerMinute bounds each user's authenticated requests, every
	// route counting (code rate_limited). With redis_url the instances
	// share each user's rate, in Redis; without, each instance counts
	// its own. A Redis that fails lets requests through (logged).
	// Default 0: off.
	RequestsPerMinute int `yaml:"requests_per_minute"`
	// Burst is how many requests a user may make at once before the
	// rate applies. Default requests_per_minute.
	Burst int `yaml:"burst"`
	// ConcurrentRuns bounds each user's queued and running runs, over
	// every instance sharing the database (code too_many_runs). Default
	// 0: off.
	ConcurrentRuns int `yaml:"concurrent_runs"`
	// QueuedRuns bounds each user's runs waiting for a worker (code
	// too_many_queued). Default 0: off.
	QueuedRuns int `yaml:"queued_runs"`
	// DailyTokens bounds each user's model tokens (input and output) per
	// UTC day, counted in the database after each model call (code
	// budget_exceeded): new runs are refused once it is reached, and a
	// running run stops, failed, before its next model call. Default 0:
	// off (tokens are then not counted).
	DailyTokens int64 `yaml:"daily_tokens"`
}

// HTTP tunes the HTTP server.
type HTTP struct {
	// MaxBodyBytes limits request bodies (413 past it). Default 1 MiB.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// Heartbeat is the silence after which a stream gets a comment line.
	// Default 15s.
	Heartbeat time.Duration `yaml:"heartbeat"`
	// StallTimeout is how long one write to a streaming client may block:
	// a client that stops reading for longer is disconnected (its run goes
	// on, and it can resume). The request that started a run on the
	// in-process event log gets 5s at most, since its run waits for it
	// (docs/protocol.md). Default 1m.
	StallTimeout time.Duration `yaml:"stall_timeout"`
	// ShutdownTimeout is how long running runs may go on after SIGTERM.
	// Default 30s.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// BodyTimeout is how long a request's body may take to arrive after its
	// headers: a slower one is answered 408 and its connection closed, so a
	// client trickling a body cannot hold a connection for long. Default 30s.
	BodyTimeout time.Duration `yaml:"body_timeout"`
	// CORS lets pages of other origins call the API from a browser.
	CORS CORS `yaml:"cors"`
}

// CORS lets web pages of other origins call the API (docs/protocol.md,
// "Browsers and CORS").
type CORS struct {
	// AllowedOrigins are the origins whose pages may call the API, each
	// scheme://host[:port] (https://app.example.com), or "*" for any
	// page, which needs auth.keys (without keys any page a user opens
	// could drive their local server). No cookie is read, so no
	// credentials are allowed either way: pages send a key, or a run
	// token. Default none: CORS is off.
	AllowedOrigins []string `yaml:"allowed_origins"`
	// AllowedHeaders are request headers pages may send beside
	// Authorization, Content-Type, Last-Event-ID, Accept and
	// X-Thread-Id, which are always allowed. Default none.
	AllowedHeaders []string `yaml:"allowed_headers"`
}

// EventLog tunes the event log: in process, or on Redis with redis_url.
type EventLog struct {
	// Retention keeps a finished run's events readable. Default 10m.
	Retention time.Duration `yaml:"retention"`
	// MaxRunBytes bounds one run's events; past it the oldest are
	// dropped (a reader asking for them gets 410). Default 4 MiB.
	MaxRunBytes int64 `yaml:"max_run_bytes"`
	// MaxTotalBytes bounds all runs' events; past it finished runs' events
	// are evicted first (then answered from the store). Default 256 MiB.
	MaxTotalBytes int64 `yaml:"max_total_bytes"`
	// MaxFinishedBytes bounds the events of finished runs kept in memory,
	// all together; past it the earliest finished are evicted before their
	// retention ends. A finished run is always answered from the store
	// (its messages and its end), so these events are only a cache for the
	// readers that come back within seconds; without this bound a server
	// serving many short runs would hold max_total_bytes of them. Default
	// 32 MiB: about ten thousand finished 20-token answers, or three
	// hundred of 1,000 tokens. In-process log only (Redis keeps each
	// finished run for retention).
	MaxFinishedBytes int64 `yaml:"max_finished_bytes"`
	// Coalesce is how long the Redis log gathers a run's events before
	// sending them in one command, so that a fast model does not cost a
	// Redis command per token; readers on other instances see events up
	// to this much later. Negative: every event is sent at once. Redis
	// only; default 2ms.
	Coalesce time.Duration `yaml:"coalesce"`
	// RedisPrefix starts the name of every Redis key and channel the
	// event log uses, so that several deployments (or test runs) can share
	// one Redis database; the instances of one deployment need the same.
	// It may not contain braces. Redis only; default "agentstream:".
	RedisPrefix string `yaml:"redis_prefix"`
}

// SimModel is the model name used with the simulated model.
const SimModel = "sim"

//go:embed assistant.yaml
var builtinAgents []byte

// WithDefaults returns c with every unset field set to its default and the
// built-in agents added.
func (c Config) WithDefaults() Config {
	def(&c.Addr, "127.0.0.1:8080")
	def(&c.DatabaseURL, "agentstream.db")
	// Decided before the base URL gets its default: a base URL without a
	// key is a server that needs none (Ollama, vLLM), not the simulator.
	usesSim := c.UsesSim()
	if !usesSim {
		def(&c.OpenAI.BaseURL, "https://api.openai.com/v1")
	}
	if c.Model == "" {
		c.Model = "gpt-4o-mini"
		if usesSim {
			c.Model = SimModel
		}
	}
	if c.OpenAI.MaxRetries == nil {
		n := 2
		c.OpenAI.MaxRetries = &n
	}
	def(&c.OpenAI.IdleTimeout, 60*time.Second)
	c.Models = modelsWithDefaults(c.Models)
	def(&c.Sim.Tokens, 40)
	def(&c.Sim.Pace, 30*time.Millisecond)
	def(&c.Sim.TTFT, 200*time.Millisecond)
	// Runs.MaxConcurrent stays 0 here: its default depends on the
	// process's open-file limit (WithFileLimit).
	if c.Runs.MaxQueued == nil {
		n := 1024
		c.Runs.MaxQueued = &n
	}
	def(&c.Runs.ToolTimeout, 30*time.Second)
	def(&c.Runs.CheckpointInterval, 2*time.Second)
	def(&c.Runs.OnDisconnect, "continue")
	def(&c.Runs.DisconnectGrace, 5*time.Second)
	def(&c.Runs.MaxParallelTools, 8)
	def(&c.Runs.LeaseTTL, 15*time.Second)
	def(&c.Runs.FinalizeTimeout, 30*time.Second)
	def(&c.Limits.Burst, c.Limits.RequestsPerMinute)
	def(&c.HTTP.MaxBodyBytes, 1<<20)
	def(&c.HTTP.Heartbeat, 15*time.Second)
	def(&c.HTTP.StallTimeout, time.Minute)
	def(&c.HTTP.ShutdownTimeout, 30*time.Second)
	def(&c.HTTP.BodyTimeout, 30*time.Second)
	def(&c.Auth.RunTokens.TTL, 10*time.Minute)
	c.Auth.JWT.withDefaults()
	def(&c.EventLog.Retention, 10*time.Minute)
	def(&c.EventLog.MaxRunBytes, 4<<20)
	def(&c.EventLog.MaxTotalBytes, 256<<20)
	def(&c.EventLog.MaxFinishedBytes, 32<<20)
	def(&c.EventLog.Coalesce, 2*time.Millisecond)
	def(&c.EventLog.RedisPrefix, "agentstream:")
	def(&c.DefaultAgent, "assistant")
	c.Agents = withBuiltins(c.Agents)
	c.Tools = toolsWithDefaults(c.Tools, c.Runs.ToolTimeout)
	c.MCPServers = mcpDefaults(c.MCPServers)
	return c
}

// Bounds of the default of runs.max_concurrent, and the file descriptors
// it leaves for everything but runs.
const (
	MinDefaultConcurrent = 64
	MaxDefaultConcurrent = 4096
	ReservedFiles        = 256
)

// ConcurrentForFileLimit is the default of runs.max_concurrent for a
// process that may open nofile files and queues queued runs: a running
// run holds at most two descriptors (client and HTTP/1.1 upstream), a
// queued one one, and ReservedFiles are left for the rest; the result is
// between MinDefaultConcurrent and MaxDefaultConcurrent.
func ConcurrentForFileLimit(nofile uint64, queued int) int {
	spare := int64(min(nofile, 1<<40)) - ReservedFiles - int64(max(queued, 0))
	return int(min(max(spare/2, MinDefaultConcurrent), MaxDefaultConcurrent))
}

// WithFileLimit returns c with runs.max_concurrent, when unset, set from
// the open-file limit nofile (ConcurrentForFileLimit). Call it after
// WithDefaults, with the process's soft RLIMIT_NOFILE.
func (c Config) WithFileLimit(nofile uint64) Config {
	if c.Runs.MaxConcurrent == 0 {
		c.Runs.MaxConcurrent = ConcurrentForFileLimit(nofile, deref(c.Runs.MaxQueued))
	}
	return c
}

// def sets *p to v when *p is its type's zero value.
func def[T comparable](p *T, v T) {
	var zero T
	if *p == zero {
		*p = v
	}
}

// withBuiltins prepends the built-in agents that the configured ones do
// not replace.
func withBuiltins(agents []agentstream.Agent) []agentstream.Agent {
	var builtin struct {
		Agents []agentstream.Agent `yaml:"agents"`
	}
	if err := yaml.Unmarshal(builtinAgents, &builtin); err != nil {
		panic("config: the embedded assistant.yaml is invalid: " + err.Error())
	}
	out := make([]agentstream.Agent, 0, len(builtin.Agents)+len(agents))
	for _, b := range builtin.Agents {
		replaced := false
		for _, a := range agents {
			replaced = replaced || a.Name == b.Name
		}
		if !replaced {
			out = append(out, b)
		}
	}
	return append(out, agents...)
}

// UsesSim reports whether the server runs against the in-process
// simulated model: when neither an API key nor a base URL is set.
func (c Config) UsesSim() bool { return c.OpenAI.APIKey == "" && c.OpenAI.BaseURL == "" }

// Validate reports every problem of a defaulted config at once, as
// Problems; in a Config that Load or Decode read, each is placed at its
// line in the file, or at the override that set it. The options name what
// a Go program embedding agentstream adds (tools, tool sources, model
// endpoints), for its agents to name.
func (c Config) Validate(opts ...ValidateOption) error {
	var ps Problems
	bad := func(path, format string, args ...any) {
		p := c.src.place(path)
		p.Message = fmt.Sprintf(format, args...)
		ps = append(ps, p)
	}

	host, _, err := net.SplitHostPort(c.Addr)
	if err != nil {
		bad("addr", "%q is not a host:port address (%v), e.g. 127.0.0.1:8080", c.Addr, err)
	} else if !c.Auth.HasIdentity() && !isLoopback(host) && !knownFrom(opts).storeChecksAddr {
		bad("addr", "%q is not a loopback address, and no identity is configured: add auth.keys, auth.service_keys or auth.jwt, create a key in the store (agentstream keys create), or listen on 127.0.0.1 (this check does not see the store: serve accepts the address when the store holds a key)", c.Addr)
	}
	if c.DebugAddr != "" {
		if host, _, err := net.SplitHostPort(c.DebugAddr); err != nil {
			bad("debug_addr", "%q is not a host:port address (%v), e.g. 127.0.0.1:6060", c.DebugAddr, err)
		} else if !isLoopback(host) {
			bad("debug_addr", "%q is not a loopback address: the profiler must not be reachable from outside", c.DebugAddr)
		}
	}
	for _, n := range []struct {
		name string
		v    int64
		note string
	}{
		{"runs.max_concurrent", int64(c.Runs.MaxConcurrent), ""},
		{"runs.max_parallel_tools", int64(c.Runs.MaxParallelTools), ""},
		{"runs.max_queued", int64(deref(c.Runs.MaxQueued)), " (0 means no queue)"},
		{"event_log.max_run_bytes", c.EventLog.MaxRunBytes, ""},
		{"event_log.max_total_bytes", c.EventLog.MaxTotalBytes, ""},
		{"event_log.max_finished_bytes", c.EventLog.MaxFinishedBytes, ""},
		{"http.max_body_bytes", c.HTTP.MaxBodyBytes, ""},
		{"openai.max_retries", int64(deref(c.OpenAI.MaxRetries)), " (0 means no retries)"},
		{"sim.tokens", int64(c.Sim.Tokens), ""},
		{"limits.requests_per_minute", int64(c.Limits.RequestsPerMinute), " (0 means no limit)"},
		{"limits.burst", int64(c.Limits.Burst), ""},
		{"limits.concurrent_runs", int64(c.Limits.ConcurrentRuns), " (0 means no limit)"},
		{"limits.queued_runs", int64(c.Limits.QueuedRuns), " (0 means no limit)"},
		{"limits.daily_tokens", c.Limits.DailyTokens, " (0 means no limit)"},
	} {
		if n.v < 0 {
			bad(n.name, "%d must not be negative%s", n.v, n.note)
		}
	}
	if c.Limits.Burst > 0 && c.Limits.RequestsPerMinute == 0 {
		bad("limits.burst", "%d without limits.requests_per_minute: set the rate too, or remove burst", c.Limits.Burst)
	}
	if c.Runs.OnDisconnect != "continue" && c.Runs.OnDisconnect != "cancel" {
		bad("runs.on_disconnect", "must be continue or cancel, not %q", c.Runs.OnDisconnect)
	}
	if strings.ContainsAny(c.EventLog.RedisPrefix, "{}") {
		// A run's keys share the hash tag {<run id>}, for Redis Cluster.
		bad("event_log.redis_prefix", "%q may not contain braces", c.EventLog.RedisPrefix)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"openai.idle_timeout", c.OpenAI.IdleTimeout}, {"runs.tool_timeout", c.Runs.ToolTimeout}, {"runs.checkpoint_interval", c.Runs.CheckpointInterval}, {"runs.lease_ttl", c.Runs.LeaseTTL}, {"runs.finalize_timeout", c.Runs.FinalizeTimeout},
		{"http.heartbeat", c.HTTP.Heartbeat}, {"http.stall_timeout", c.HTTP.StallTimeout}, {"http.shutdown_timeout", c.HTTP.ShutdownTimeout}, {"http.body_timeout", c.HTTP.BodyTimeout},
		{"event_log.retention", c.EventLog.Retention}, {"sim.pace", c.Sim.Pace}, {"sim.ttft", c.Sim.TTFT},
	} {
		if d.v < 0 {
			bad(d.name, "%v must not be negative", d.v)
		}
	}
	keys := map[string]int{}
	for i, k := range c.Auth.Keys {
		path := fmt.Sprintf("auth.keys[%d]", i)
		if len(k.Key) < 16 {
			bad(path+".key", "a key needs at least 16 characters (this one has %d)", len(k.Key))
		}
		if k.User == "" {
			bad(path+".user", "empty: every key needs the name of its user")
		}
		if first, dup := keys[k.Key]; dup {
			bad(path+".key", "the same key as auth.keys[%d]: each key must be different", first)
		} else {
			keys[k.Key] = i
		}
	}
	c.validateBrowsers(bad)
	c.validateIdentity(bad)
	c.validateMCP(bad)
	// WithDefaults puts the built-in agents that the file does not
	// replace before the file's.
	builtins := 0
	if c.src != nil {
		builtins = max(len(c.Agents)-c.src.agents, 0)
	}
	known := c.validateTools(bad)
	added := knownFrom(opts)
	ps = append(ps, added.problems(known)...)
	known = append(known, added.tools...)
	agents := map[string]string{}
	var names []string
	for i, a := range c.Agents {
		path := fmt.Sprintf("agents[%d]", i-builtins)
		if i < builtins {
			path = fmt.Sprintf("agents (built in: %s)", a.Name)
		}
		switch first, dup := agents[a.Name]; {
		case a.Name == "":
			bad(path+".name", "empty: every agent needs a name")
		case dup:
			bad(path+".name", "agent %q is declared twice (also %s): rename or remove one", a.Name, first)
		case strings.ContainsAny(a.Name, " /"):
			bad(path+".name", "%q may not contain spaces or slashes", a.Name)
		}
		if _, dup := agents[a.Name]; !dup {
			agents[a.Name] = path
			names = append(names, a.Name)
		}
		if a.MaxTurns < 0 {
			bad(path+".max_turns", "%d must not be negative", a.MaxTurns)
		}
		if len(a.Handoffs) > 0 {
			bad(path+".handoffs", "handing a run to another agent is not supported yet: remove handoffs")
		}
		if len(a.RequireApproval) > 0 {
			bad(path+".require_approval", "approving tool calls is not supported yet: remove require_approval")
		}
		if _, err := template.New(a.Name).Parse(a.Instructions); err != nil {
			bad(path+".instructions", "not a valid Go template: %v", err)
		}
		c.checkAgentMCPServers(path, a.MCPServers, added.sources, bad)
		for j, t := range a.Tools {
			if slices.Contains(known, t) {
				continue
			}
			hint := "the tools are " + strings.Join(known, ", ")
			if s := closest(t, known); s != "" {
				hint = "did you mean " + s + "?"
			}
			bad(fmt.Sprintf("%s.tools[%d]", path, j), "unknown tool %q; %s", t, hint)
		}
	}
	c.validateModels(bad, added.endpoints)
	if _, ok := agents[c.DefaultAgent]; !ok {
		bad("default_agent", "%q is not among the agents (%s): declare it under agents, or name one of them", c.DefaultAgent, strings.Join(names, ", "))
	}
	return ps.err()
}

// deref is *p, or 0 for nil.
func deref(p *int) int {
	if p == nil {
		return 0
	}
	return *p
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ListensOnLoopback reports whether Addr is a loopback address (or not
// a host:port at all, which Validate reports).
func (c Config) ListensOnLoopback() bool {
	host, _, err := net.SplitHostPort(c.Addr)
	return err != nil || isLoopback(host)
}
