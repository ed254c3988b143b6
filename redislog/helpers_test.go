package redislog

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/redis/go-redis/v9"
)

// redisURL returns the Redis the tests use, from AGENTSTREAM_TEST_REDIS_URL.
// Without it the test is skipped, or fails when CI=true.
func redisURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("AGENTSTREAM_TEST_REDIS_URL")
	if u == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("AGENTSTREAM_TEST_REDIS_URL is not set (CI=true)")
		}
		t.Skip("AGENTSTREAM_TEST_REDIS_URL is not set")
	}
	return u
}

// rawClient is a plain client on the test Redis, to look at and break
// what the logs write.
func rawClient(t testing.TB) *redis.Client {
	t.Helper()
	o, err := redis.ParseURL(redisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(o)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// testPrefix returns a key prefix of the test's own, whose keys are
// deleted when the test ends (never FLUSHDB: other tests share the Redis).
func testPrefix(t testing.TB) string {
	t.Helper()
	prefix := "agentstream-test:" + agentstream.NewID("") + ":"
	c := rawClient(t)
	t.Cleanup(func() {
		ctx := context.Background()
		iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			c.Del(ctx, iter.Val())
		}
	})
	return prefix
}

// openLog opens a Log on url (the test Redis when empty) with the prefix
// opts.Prefix, or a test prefix, and closes it when the test ends.
func openLog(t testing.TB, url string, opts Options) *Log {
	t.Helper()
	if url == "" {
		url = redisURL(t)
	}
	if opts.Prefix == "" {
		opts.Prefix = testPrefix(t)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(testLogWriter{t}, nil))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := Open(ctx, url, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// testLogWriter sends a Log's messages to the test's log.
type testLogWriter struct{ t testing.TB }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func runID() string { return agentstream.NewID("run_") }

func delta(i int) agentstream.Event {
	return agentstream.NewEvent(agentstream.EventMessageDelta,
		agentstream.MessageDeltaData{MessageID: "msg_1", Delta: fmt.Sprintf("tok%d ", i)})
}

func done(id string) agentstream.Event {
	return agentstream.NewEvent(agentstream.EventRunCompleted,
		agentstream.RunEndData{RunID: id, Status: agentstream.RunCompleted})
}

func mustAppend(t testing.TB, l agentstream.EventLog, id string, evs ...agentstream.Event) int64 {
	t.Helper()
	seq, err := l.Append(context.Background(), id, evs...)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	return seq
}

// readTo reads id from after until it has seq `to` (or the terminal
// event), checking each event follows the one before, within 10 seconds.
func readTo(t testing.TB, l agentstream.EventLog, id string, after, to int64) []agentstream.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var all []agentstream.Event
	for after < to {
		evs, end, err := l.Read(ctx, id, after, 100)
		if err != nil {
			t.Fatalf("Read(after=%d): %v", after, err)
		}
		for _, ev := range evs {
			if ev.Seq != after+1 {
				t.Fatalf("got seq %d after %d", ev.Seq, after)
			}
			after = ev.Seq
			all = append(all, ev)
		}
		if end {
			break
		}
	}
	return all
}

// readErr reads id after `after` and returns the error; the read must not
// wait.
func readErr(l agentstream.EventLog, id string, after int64) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _, err := l.Read(ctx, id, after, 10)
	return err
}

// proxy is a TCP proxy to Redis that a test can cut.
type proxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	down  bool
	conns map[net.Conn]struct{}
}

// newProxy starts a proxy to the test Redis and returns it with the URL
// that goes through it.
func newProxy(t testing.TB) (*proxy, string) {
	t.Helper()
	raw := redisURL(t)
	o, err := redis.ParseURL(raw)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: o.Addr, conns: make(map[net.Conn]struct{})}
	go p.serve()
	t.Cleanup(func() {
		_ = ln.Close()
		p.cut()
	})
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = ln.Addr().String()
	return p, u.String()
}

func (p *proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.down {
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		p.mu.Unlock()
		r, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[r] = struct{}{}, struct{}{}
		p.mu.Unlock()
		pipe := func(dst, src net.Conn) {
			_, _ = io.Copy(dst, src)
			_ = dst.Close()
			_ = src.Close()
			p.mu.Lock()
			delete(p.conns, dst)
			delete(p.conns, src)
			p.mu.Unlock()
		}
		go pipe(c, r)
		go pipe(r, c)
	}
}

// cut closes every connection through the proxy.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		_ = c.Close()
	}
}

// setDown makes the proxy refuse (down) or pass connections; going down
// cuts the open ones.
func (p *proxy) setDown(down bool) {
	p.mu.Lock()
	p.down = down
	p.mu.Unlock()
	if down {
		p.cut()
	}
}

// errContains reports whether err's text holds s.
func errContains(err error, s string) bool { return err != nil && strings.Contains(err.Error(), s) }

// cmdHook is a go-redis hook that shows the function every command the
// client sends: alone, or those of a pipeline together.
type cmdHook func(pipeline bool, cmds ...redis.Cmder)

func (f cmdHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (f cmdHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		f(false, cmd)
		return next(ctx, cmd)
	}
}

func (f cmdHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		f(true, cmds...)
		return next(ctx, cmds)
	}
}
