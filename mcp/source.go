package mcp

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"slices"
	"sync"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/agentstream/agentstream"
)

// Source is one MCP server: an agentstream.ToolSource.
type Source struct {
	cfg    Config
	set    *Set
	client *sdk.Client
	// http is the client of a Streamable HTTP server: it adds the headers.
	http *http.Client

	// refreshing serializes the readings of the tool list.
	refreshing sync.Mutex

	mu sync.Mutex
	// cur is the live connection; nil while the server is down.
	cur *conn
	// cause says why the server is down.
	cause error
	// connecting is set while an attempt to (re)connect is under way:
	// calls wait for it rather than fail.
	connecting bool
	// changed is closed, and replaced, when cur or connecting changes.
	changed chan struct{}
	tools   []*tool
	closed  bool
	// stop is closed by close; it ends the supervising goroutine.
	stop chan struct{}
	// supervised ends with the supervising goroutine.
	supervised sync.WaitGroup
}

func newSource(cfg Config, set *Set) *Source {
	s := &Source{cfg: cfg, set: set, changed: make(chan struct{}), stop: make(chan struct{})}
	opts := &sdk.ClientOptions{
		// The handler must not wait on the session it is called from.
		ToolListChangedHandler: func(_ context.Context, req *sdk.ToolListChangedRequest) {
			go s.refresh(req.Session)
		},
	}
	if cfg.URL != "" {
		// An HTTP server that vanishes without closing its connections
		// is found by pings (sessions of the 2025 protocol; the 2026 one
		// has none to lose): two missed pings end the session, which is
		// then reconnected. A child's end is seen on its stdout.
		opts.KeepAlive, opts.KeepAliveFailureThreshold = keepAlive, 2
	}
	s.client = sdk.NewClient(&sdk.Implementation{Name: "agentstream", Version: "1"}, opts)
	if cfg.URL != "" {
		s.http = &http.Client{Transport: &headerTransport{
			base: http.DefaultTransport.(*http.Transport).Clone(), headers: cfg.Headers, forward: cfg.Forward,
		}}
	}
	return s
}

// Name is what agents call the server.
func (s *Source) Name() string { return s.cfg.Name }

// Tools returns the server's tools as they were last read: while the
// server is down, those it had (their calls fail until it is back).
func (s *Source) Tools(context.Context) ([]agentstream.Tool, error) {
	ts := s.current()
	out := make([]agentstream.Tool, len(ts))
	for i, t := range ts {
		out[i] = t
	}
	return out, nil
}

func (s *Source) current() []*tool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tools
}

// Available reports whether the server is connected now, and if not, why.
func (s *Source) Available() (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur != nil, s.cause
}

// notify wakes those waiting for a change; s.mu is held.
func (s *Source) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// conn is one session with the server, and its child process on stdio.
type conn struct {
	session *sdk.ClientSession
	proc    *process
	since   time.Time
	// closing ends the session once.
	closing sync.Once
	closed  chan struct{}
}

// close ends the session, stopping the child process (and whatever it
// started), and returns once it is stopped.
func (c *conn) close() {
	c.closing.Do(func() {
		done := make(chan struct{})
		go func() {
			defer close(done)
			// For a child: stdin closed, then SIGTERM, then SIGKILL.
			_ = c.session.Close()
		}()
		select {
		case <-done:
		case <-time.After(3*stopGrace + time.Second):
			// A session that does not close: the process group goes.
		}
		c.proc.kill()
		close(c.closed)
	})
	<-c.closed
}

// connect starts (or connects to) the server and reads its tools, within
// the server's ConnectTimeout.
func (s *Source) connect(ctx context.Context) (*conn, []*sdk.Tool, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ConnectTimeout)
	defer cancel()
	var t sdk.Transport
	var proc *process
	if s.cfg.URL != "" {
		t = &sdk.StreamableClientTransport{Endpoint: s.cfg.URL, HTTPClient: s.http}
	} else {
		cmd := exec.Command(s.cfg.Command, s.cfg.Args...)
		cmd.Dir = s.cfg.Dir
		cmd.Env = ChildEnv(s.cfg.Env)
		proc = newProcess(cmd, s.cfg.Name, s.set.logger, s.set.secrets)
		t = &sdk.CommandTransport{Command: cmd, TerminateDuration: stopGrace}
	}
	cs, err := s.client.Connect(ctx, t, nil)
	if err != nil {
		proc.kill()
		return nil, nil, s.set.mask(proc.explain(fmt.Errorf("connecting: %w", timeoutErr(ctx, err))))
	}
	c := &conn{session: cs, proc: proc, since: time.Now(), closed: make(chan struct{})}
	list, err := listTools(ctx, cs)
	if err != nil {
		c.close()
		return nil, nil, s.set.mask(proc.explain(fmt.Errorf("listing its tools: %w", timeoutErr(ctx, err))))
	}
	return c, list, nil
}

// timeoutErr says a context deadline is the connect timeout.
func timeoutErr(ctx context.Context, err error) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("no answer within the connect timeout (%w)", err)
	}
	return err
}

func listTools(ctx context.Context, cs *sdk.ClientSession) ([]*sdk.Tool, error) {
	var out []*sdk.Tool
	for t, err := range cs.Tools(ctx, nil) {
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

// missing returns the names of the allow-list that the server's tools do
// not have.
func (s *Source) missing(tools []*tool) []string {
	var out []string
	for _, name := range s.cfg.Tools {
		if !slices.ContainsFunc(tools, func(t *tool) bool { return t.remote == name }) {
			out = append(out, name)
		}
	}
	return out
}

// install makes c the live connection, offering tools (those no other
// tool's name refuses).
func (s *Source) install(c *conn, tools []*tool) {
	tools = s.set.reg.claim(s.set.logger, s.cfg.Name, tools)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		c.close()
		return
	}
	s.cur, s.cause, s.tools, s.connecting = c, nil, tools, false
	s.notify()
	s.mu.Unlock()
}

// refresh reads the tool list of cs again, after the server said it
// changed.
func (s *Source) refresh(cs *sdk.ClientSession) {
	s.refreshing.Lock()
	defer s.refreshing.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ConnectTimeout)
	defer cancel()
	go func() {
		select {
		case <-s.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	list, err := listTools(ctx, cs)
	if err != nil {
		select {
		case <-s.stop: // closing: nothing to say
		default:
			s.set.logger.Warn("an MCP server's tools changed, and could not be read again; it keeps the tools it had", "mcp_server", s.cfg.Name, "err", err)
		}
		return
	}
	s.mu.Lock()
	live := s.cur != nil && s.cur.session == cs
	s.mu.Unlock()
	if !live {
		return // a new session read its own list
	}
	tools := s.set.reg.claim(s.set.logger, s.cfg.Name, s.build(list))
	s.mu.Lock()
	if s.cur != nil && s.cur.session == cs {
		s.tools = tools
	}
	s.mu.Unlock()
	s.set.logger.Info("an MCP server's tools changed", "mcp_server", s.cfg.Name, "tools", len(tools))
}

// lost ends c after a call found it broken (an HTTP server that went
// away): the supervisor then reconnects.
func (s *Source) lost(c *conn, err error) {
	s.mu.Lock()
	live := s.cur == c
	if live {
		s.cur, s.cause, s.connecting = nil, err, true
		s.notify()
	}
	s.mu.Unlock()
	if live {
		go c.close()
	}
}

// supervise watches the server from now on: when its session ends, it is
// reconnected, at once and then with backoff (1s doubling up to
// MaxBackoff) while attempts fail. c is the live connection, or nil when
// the first attempt failed with err.
func (s *Source) supervise(c *conn, err error) {
	s.mu.Lock()
	if c == nil {
		s.cause, s.connecting = err, false
		s.notify()
	}
	s.mu.Unlock()
	s.supervised.Add(1)
	go func() {
		defer s.supervised.Done()
		s.watch(c)
	}()
}

func (s *Source) watch(c *conn) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-s.stop
		cancel()
	}()
	var delay time.Duration
	if c == nil {
		delay = firstBackoff
	}
	for {
		if c != nil {
			ended := make(chan error, 1)
			go func() { ended <- c.session.Wait() }()
			select {
			case <-s.stop:
				return
			case err := <-ended:
				c.close()
				cause := s.set.mask(c.proc.explain(sessionEnded(err)))
				s.mu.Lock()
				if s.cur == c { // else lost has said why
					s.cur, s.cause, s.connecting = nil, cause, true
					s.notify()
				}
				s.mu.Unlock()
				s.set.logger.Warn("an MCP server went away; reconnecting", "mcp_server", s.cfg.Name, "err", cause)
				if time.Since(c.since) >= stableAfter {
					delay = 0
				}
			}
		}
		if delay > 0 {
			s.mu.Lock()
			s.connecting = false
			s.notify()
			s.mu.Unlock()
			t := time.NewTimer(delay)
			select {
			case <-s.stop:
				t.Stop()
				return
			case <-t.C:
			}
		}
		s.mu.Lock()
		s.connecting = true
		s.notify()
		s.mu.Unlock()
		next, list, err := s.connect(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			s.mu.Lock()
			s.cause = err
			s.mu.Unlock()
			s.set.logger.Warn("an MCP server could not be reconnected; trying again", "mcp_server", s.cfg.Name, "err", err, "in", nextDelay(delay, s.set.backoff))
			c = nil
			delay = nextDelay(delay, s.set.backoff)
			continue
		}
		s.install(next, s.build(list))
		s.set.logger.Info("MCP server reconnected", "mcp_server", s.cfg.Name, "tools", len(s.current()))
		c, delay = next, firstBackoff
	}
}

func nextDelay(d, max time.Duration) time.Duration {
	if d <= 0 {
		return firstBackoff
	}
	return min(2*d, max)
}

// sessionEnded describes why a session ended.
func sessionEnded(err error) error {
	var exit *exec.ExitError
	switch {
	case err == nil:
		return errors.New("the server ended the session")
	case errors.As(err, &exit):
		return errors.New("the session ended") // explain says how
	}
	return fmt.Errorf("the session ended: %w", err)
}

// session returns the live connection, waiting for a (re)connection under
// way; without one, it fails with why the server is not available.
func (s *Source) session(ctx context.Context) (*conn, error) {
	for {
		s.mu.Lock()
		c, connecting, cause, closed, changed := s.cur, s.connecting, s.cause, s.closed, s.changed
		s.mu.Unlock()
		switch {
		case closed:
			return nil, fmt.Errorf("MCP server %s is not available: agentstream is shutting down", s.cfg.Name)
		case c != nil:
			return c, nil
		case !connecting:
			if cause == nil {
				cause = errors.New("it is not connected")
			}
			return nil, fmt.Errorf("MCP server %s is not available: %v", s.cfg.Name, cause)
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// close ends the session and stops the supervisor.
func (s *Source) close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	close(s.stop)
	c := s.cur
	s.cur = nil
	s.notify()
	s.mu.Unlock()
	// A connection the supervisor is making is closed by install.
	s.supervised.Wait()
	if c != nil {
		c.close()
	}
}
