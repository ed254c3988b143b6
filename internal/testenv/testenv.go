// Package testenv gives tests the services they need (a PostgreSQL schema
// of their own, a Redis key prefix of their own) from the environment, and
// decides what a missing one means: a skip on a developer's machine, a
// failure in CI (CI=true), where nothing may be skipped.
package testenv

import (
	"context"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/agentstream/agentstream"
)

// The environment variables naming the test services.
const (
	DatabaseURLVar = "AGENTSTREAM_TEST_DATABASE_URL"
	RedisURLVar    = "AGENTSTREAM_TEST_REDIS_URL"
)

// Missing skips t because what it needs is missing (hint says how to get
// it), or fails it under CI=true.
func Missing(t testing.TB, what, hint string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s, and CI=true: this test must run in CI (%s)", what, hint)
	}
	t.Skipf("skipping: %s (%s)", what, hint)
}

// DatabaseURL returns the test PostgreSQL database's URL, or skips t.
func DatabaseURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv(DatabaseURLVar)
	if u == "" {
		Missing(t, DatabaseURLVar+" is not set", "set it to a database tests may create schemas in, e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable; bash .ci/run does")
	}
	return u
}

// RedisURL returns the test Redis's URL, or skips t.
func RedisURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv(RedisURLVar)
	if u == "" {
		Missing(t, RedisURLVar+" is not set", "set it to a Redis tests may write to, e.g. redis://127.0.0.1:6379/0; bash .ci/run does")
	}
	return u
}

// PostgresSchema creates an empty schema in the test database, dropped
// with everything in it when t ends, and returns its name and a URL whose
// search_path is that schema alone: tests in parallel, or several servers
// of one test, each see their own tables.
func PostgresSchema(t testing.TB) (schema, schemaURL string) {
	t.Helper()
	base := DatabaseURL(t)
	schema = "agentstream_test_" + strings.ToLower(agentstream.NewID(""))
	exec(t, base, `CREATE SCHEMA `+pgx.Identifier{schema}.Sanitize())
	t.Cleanup(func() { exec(t, base, `DROP SCHEMA `+pgx.Identifier{schema}.Sanitize()+` CASCADE`) })
	return schema, WithParam(t, base, "search_path", schema)
}

// WithParam returns the connection string u with a parameter set, whether
// u is a URL or a keyword/value string.
func WithParam(t testing.TB, u, key, value string) string {
	t.Helper()
	if strings.HasPrefix(u, "postgres://") || strings.HasPrefix(u, "postgresql://") {
		parsed, err := url.Parse(u)
		if err != nil {
			t.Fatalf("parse %s: %v", DatabaseURLVar, err)
		}
		q := parsed.Query()
		q.Set(key, value)
		// libpq and pgx read '+' as itself, not as a space.
		parsed.RawQuery = strings.ReplaceAll(q.Encode(), "+", "%20")
		return parsed.String()
	}
	return u + " " + key + "='" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(value) + "'"
}

// exec runs sql on a connection of its own to the database at u. It may
// run at cleanup, when t's context is done.
func exec(t testing.TB, u, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Errorf("connect to %s: %v", DatabaseURLVar, err)
		return
	}
	defer func() { _ = conn.Close(ctx) }()
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Errorf("%s: %v", sql, err)
	}
}

// RedisPrefix returns a key prefix no other test uses, for a Redis event
// log of this test's own.
func RedisPrefix() string {
	return "agentstream-test:" + strings.ToLower(agentstream.NewID("")) + ":"
}

// RedisPrefixCleaned returns a RedisPrefix whose keys are deleted from the
// Redis at redisURL when t ends, after the cleanups registered later (a
// server that writes until it stops). Never FLUSHDB: tests in parallel,
// and other test runs, share the Redis.
func RedisPrefixCleaned(t testing.TB, redisURL string) string {
	t.Helper()
	opts, err := redis.ParseURL(redisURL)
	if err != nil {
		t.Fatalf("parse the Redis URL %q: %v", redisURL, err)
	}
	prefix := RedisPrefix()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c := redis.NewClient(opts)
		defer func() { _ = c.Close() }()
		iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			if err := c.Del(ctx, iter.Val()).Err(); err != nil {
				t.Errorf("deleting the test's Redis key %s: %v", iter.Val(), err)
				return
			}
		}
		if err := iter.Err(); err != nil {
			t.Errorf("listing the test's Redis keys %s*: %v", prefix, err)
		}
	})
	return prefix
}

// Proxy forwards TCP connections to a target until Stop, which closes the
// listener and every connection, as a service that goes away would.
type Proxy struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

// StartProxy listens on a loopback port and forwards to target; it stops
// at cleanup.
func StartProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{ln: ln}
	go p.serve(target)
	t.Cleanup(p.Stop)
	return p
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

func (p *Proxy) serve(target string) {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // stopped
		}
		u, err := net.Dial("tcp", target)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, u)
		p.mu.Unlock()
		go func() { _, _ = io.Copy(u, c); _ = u.Close() }()
		go func() { _, _ = io.Copy(c, u); _ = c.Close() }()
	}
}

// Stop closes the listener and every forwarded connection.
func (p *Proxy) Stop() {
	_ = p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		_ = c.Close() // already closed if its peer went first
	}
	p.conns = nil
}
