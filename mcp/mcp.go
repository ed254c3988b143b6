// Package mcp gives agents the tools of MCP servers (Model Context
// Protocol), on github.com/modelcontextprotocol/go-sdk: each configured
// server is an agentstream.ToolSource, reached over stdio (a child process)
// or Streamable HTTP.
//
// Start connects to every server at once; one that fails is logged and
// tried again in the background, unless it is required. A server's tools
// are offered under names model APIs accept (Name), with its prefix, and
// no two tools may share a name (a clash is a Problem at start, and a tool
// announced later that clashes is refused). The tool list is read again
// when the server says it changed (notifications/tools/list_changed). A
// server that goes away (its process exits, its HTTP session is lost) is
// reconnected with backoff; meanwhile its tools answer with a tool error.
// A call whose context ends (a run cancelled or interrupted) is cancelled
// on the server too (notifications/cancelled, which the go-sdk sends).
// Calls forward what the server's Forward asks of the run (RunInfo): in
// the call's _meta, and over HTTP as headers.
package mcp

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/tools"
)

// Config is one MCP server, as the config's mcp_servers entry declares it
// (see config.MCPServer for each setting).
type Config struct {
	// Name is what agents call the server (agents[].mcp_servers).
	Name string
	// Command, Args, Env and Dir start a child process spoken to over
	// stdio. Env adds to the few variables a child inherits (ChildEnv).
	Command string
	Args    []string
	Env     map[string]string
	Dir     string
	// URL is a Streamable HTTP endpoint, sent Headers with every request.
	URL     string
	Headers map[string]string
	// Tools, when set, is the allow-list: the server's tools (by the
	// server's names) that agents are offered; the others are left out.
	Tools []string
	// Prefix starts the name of each of the server's tools.
	Prefix string
	// Forward is what a call tells the server of its run: over HTTP as
	// headers (tools.Forward.Apply), and in _meta (both transports), the
	// user id as MetaUserID when UserHeader is set, and the context keys of
	// ContextHeaders the run has as the object MetaContext.
	Forward tools.Forward
	// Required makes a server that cannot start stop the start of all.
	Required bool
	// ConnectTimeout bounds starting (or connecting to) the server and
	// reading its tools, at start and at each reconnection.
	ConnectTimeout time.Duration
	// Timeout bounds each call of its tools; 0: the runner's tool timeout.
	Timeout time.Duration
}

// The _meta keys of forwarded values.
const (
	MetaUserID  = "agentstream/user_id"
	MetaContext = "agentstream/context"
)

// Options are what the servers of a configuration share.
type Options struct {
	Logger *slog.Logger
	// Reserved are the names of the other tools agents can have (built-in,
	// declared in the config, added by a Go program): an MCP server's tool
	// offered under one of them clashes with it.
	Reserved []string
	// MaxBackoff caps the wait between two attempts to reconnect a server.
	// Default 30s.
	MaxBackoff time.Duration
	// Secrets are masked in what a server writes on stderr and in the
	// errors of starting it, which are logged and shown by check-config:
	// a child may print the token its env gave it. Default nil: none.
	Secrets *tools.Secrets
}

// Default timings.
const (
	DefaultConnectTimeout = 30 * time.Second
	DefaultMaxBackoff     = 30 * time.Second
	// firstBackoff is the wait before the second attempt to reconnect (the
	// first is at once); each attempt that fails doubles it.
	firstBackoff = time.Second
	// stableAfter is how long a connection must have lasted for its loss
	// to be retried at once again, not after the last backoff.
	stableAfter = 30 * time.Second
	// keepAlive is how often an HTTP server's session is pinged.
	keepAlive = 30 * time.Second
	// stopGrace is how long a child process has to exit once its stdin is
	// closed, then again after SIGTERM, before SIGKILL.
	stopGrace = 2 * time.Second
)

// A Problem is something wrong with an MCP server found by starting it or
// reading its tools.
type Problem struct {
	// Server is the server's name.
	Server string
	// Key is the server's setting the problem is about ("tools",
	// "prefix"), "" for the server as a whole.
	Key     string
	Message string
}

func (p Problem) String() string {
	return fmt.Sprintf("MCP server %q: %s", p.Server, p.Message)
}

// Problems is every problem Start or Check found. As an error it prints
// one problem per line.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Set is the MCP servers of a configuration.
type Set struct {
	logger  *slog.Logger
	sources []*Source
	reg     *registry
	backoff time.Duration
	secrets *tools.Secrets
}

func newSet(cfgs []Config, opts Options) *Set {
	s := &Set{logger: opts.Logger, reg: newRegistry(opts.Reserved), backoff: opts.MaxBackoff, secrets: opts.Secrets}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	if s.backoff <= 0 {
		s.backoff = DefaultMaxBackoff
	}
	for _, c := range cfgs {
		if c.ConnectTimeout <= 0 {
			c.ConnectTimeout = DefaultConnectTimeout
		}
		s.sources = append(s.sources, newSource(c, s))
	}
	return s
}

// Start connects to the servers, all at once, and reads their tools. A
// server that fails is logged (one line naming it and the cause) and tried
// again in the background, with backoff; a required one makes Start fail.
// Start fails too when two tools would be offered under one name. Its
// error is Problems. Close the Set to stop the servers.
func Start(ctx context.Context, cfgs []Config, opts Options) (*Set, error) {
	s := newSet(cfgs, opts)
	results := s.connectAll(ctx)
	var probs Problems
	for i, src := range s.sources {
		if err := results[i].err; err != nil && src.cfg.Required {
			probs = append(probs, Problem{Server: src.cfg.Name, Message: fmt.Sprintf("it is required, and it could not start: %v", err)})
		}
	}
	probs = append(probs, s.clashes(results)...)
	if len(probs) > 0 {
		for _, r := range results {
			if r.conn != nil {
				r.conn.close()
			}
		}
		return nil, probs
	}
	for i, src := range s.sources {
		r := results[i]
		if r.err != nil {
			s.logger.Warn("an MCP server could not start; its tools are missing until it is back (trying again in the background)",
				"mcp_server", src.cfg.Name, "err", r.err)
		} else {
			if missing := src.missing(r.tools); len(missing) > 0 {
				s.logger.Warn("an MCP server's allow-list (tools) names tools it does not have", "mcp_server", src.cfg.Name, "tools", missing)
			}
			src.install(r.conn, r.tools)
			s.logger.Info("MCP server connected", "mcp_server", src.cfg.Name, "tools", len(src.current()))
		}
		src.supervise(r.conn, r.err)
	}
	return s, nil
}

// Check starts (or connects to) each server, reads its tools and stops it:
// what `agentstream check-config --connect` does. It returns the servers
// that could not be reached, allow-lists that name tools a server does not
// have, and tools that would be offered under one name.
func Check(ctx context.Context, cfgs []Config, opts Options) Problems {
	s := newSet(cfgs, opts)
	results := s.connectAll(ctx)
	var probs Problems
	for i, src := range s.sources {
		r := results[i]
		if r.err != nil {
			probs = append(probs, Problem{Server: src.cfg.Name, Message: fmt.Sprintf("could not start: %v", r.err)})
			continue
		}
		r.conn.close()
		if missing := src.missing(r.tools); len(missing) > 0 {
			probs = append(probs, Problem{Server: src.cfg.Name, Key: "tools", Message: fmt.Sprintf("the allow-list names tools the server does not have: %s", strings.Join(missing, ", "))})
		}
	}
	return append(probs, s.clashes(results)...)
}

// Sources returns the servers as the tool sources agents name, by name;
// nil for a nil Set.
func (s *Set) Sources() map[string]agentstream.ToolSource {
	if s == nil {
		return nil
	}
	out := make(map[string]agentstream.ToolSource, len(s.sources))
	for _, src := range s.sources {
		out[src.cfg.Name] = src
	}
	return out
}

// Source returns the named server, or nil.
func (s *Set) Source(name string) *Source {
	for _, src := range s.sources {
		if src.cfg.Name == name {
			return src
		}
	}
	return nil
}

// Close ends every session and stops every child process (closing its
// stdin, then SIGTERM, then SIGKILL, 2s apart), all at once, and returns
// once they are stopped. Calls still in flight fail.
func (s *Set) Close() {
	if s == nil {
		return
	}
	var wg sync.WaitGroup
	for _, src := range s.sources {
		wg.Go(src.close)
	}
	wg.Wait()
}

// connected is the outcome of connecting to one server.
type connected struct {
	conn  *conn
	tools []*tool
	err   error
}

// connectAll connects to every server at once.
func (s *Set) connectAll(ctx context.Context) []connected {
	out := make([]connected, len(s.sources))
	var wg sync.WaitGroup
	for i, src := range s.sources {
		wg.Go(func() {
			c, list, err := src.connect(ctx)
			if err != nil {
				out[i] = connected{err: err}
				return
			}
			out[i] = connected{conn: c, tools: src.build(list)}
		})
	}
	wg.Wait()
	return out
}

// clashes reports the tools of connected servers that would be offered
// under one name: two tools of one server, of two servers, or a server's
// and another tool of the agents'.
func (s *Set) clashes(results []connected) Problems {
	var probs Problems
	type owner struct{ server, tool string }
	owners := map[string]owner{}
	for i, src := range s.sources {
		for _, t := range results[i].tools {
			name := t.spec.Name
			switch o, taken := owners[name]; {
			case s.reg.reserved[name]:
				probs = append(probs, Problem{Server: src.cfg.Name, Key: "tools", Message: fmt.Sprintf(
					"its tool %q is offered as %q, the name of a built-in, config or Go tool: give the server a prefix, or leave the tool out of its allow-list (tools)", t.remote, name)})
			case taken && o.server == src.cfg.Name:
				probs = append(probs, Problem{Server: src.cfg.Name, Key: "tools", Message: fmt.Sprintf(
					"its tools %q and %q are both offered as %q: leave one out of its allow-list (tools)", o.tool, t.remote, name)})
			case taken:
				probs = append(probs, Problem{Server: src.cfg.Name, Key: "prefix", Message: fmt.Sprintf(
					"its tool %q and the tool %q of MCP server %q are both offered as %q: give one server a prefix, or leave the tool out of an allow-list (tools)", t.remote, o.tool, o.server, name)})
			default:
				owners[name] = owner{src.cfg.Name, t.remote}
			}
		}
	}
	return probs
}

// registry knows which server offers each MCP tool name, so that a tool
// announced later under a name already taken is refused.
type registry struct {
	reserved map[string]bool
	mu       sync.Mutex
	owner    map[string]string // tool name → server name
}

func newRegistry(reserved []string) *registry {
	r := &registry{reserved: map[string]bool{}, owner: map[string]string{}}
	for _, n := range reserved {
		r.reserved[n] = true
	}
	return r
}

// claim gives server the names of tools, instead of those it had, and
// returns the tools it may offer: those whose name no other tool has. Each
// refused tool is logged.
func (r *registry) claim(logger *slog.Logger, server string, tools []*tool) []*tool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for name, o := range r.owner {
		if o == server {
			delete(r.owner, name)
		}
	}
	out := tools[:0:0]
	for _, t := range tools {
		name := t.spec.Name
		switch o, taken := r.owner[name]; {
		case r.reserved[name]:
			logger.Warn("an MCP server's tool is named like a built-in, config or Go tool; it is refused",
				"mcp_server", server, "tool", t.remote, "name", name)
		case taken && o == server:
			logger.Warn("two tools of an MCP server are offered under one name; the second is refused",
				"mcp_server", server, "tool", t.remote, "name", name)
		case taken:
			logger.Warn("an MCP server's tool is named like a tool of another MCP server; it is refused",
				"mcp_server", server, "tool", t.remote, "name", name, "other_mcp_server", o)
		default:
			r.owner[name] = server
			out = append(out, t)
		}
	}
	return out
}
