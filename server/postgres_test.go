package server_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/agentstream/agentstream/config"
	"github.com/agentstream/agentstream/internal/testenv"
	"github.com/agentstream/agentstream/server"
	"github.com/agentstream/agentstream/sim"
)

// TestUnreachableServices: a database or Redis that cannot be reached is a
// clear error at start, not a hang.
func TestUnreachableServices(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, want string
		mod        func(*config.Config)
	}{
		{"postgres", "PostgreSQL", func(c *config.Config) {
			c.DatabaseURL = "postgres://nobody:secret@127.0.0.1:1/nothing?connect_timeout=2"
		}},
		{"redis", "Redis", func(c *config.Config) { c.RedisURL = "redis://127.0.0.1:1/0" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := config.Config{Addr: "127.0.0.1:0", DatabaseURL: t.TempDir() + "/db"}
			tc.mod(&cfg)
			srv, err := server.New(context.Background(), cfg, slog.New(slog.DiscardHandler))
			if err == nil {
				_ = srv.Shutdown(context.Background())
				t.Fatal("server.New succeeded with an unreachable service")
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "127.0.0.1:1") || strings.Contains(err.Error(), "secret") {
				t.Fatalf("error %q: want it to name %s and its address, without the password", err, tc.want)
			}
		})
	}
}

// TestPostgresGoesAway: when PostgreSQL cannot be reached any more,
// /readyz answers 503 within its bound (not a hang), and so do requests
// that need the store.
func TestPostgresGoesAway(t *testing.T) {
	t.Parallel()
	_, dbURL := testenv.PostgresSchema(t)
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := testenv.StartProxy(t, u.Host)
	u.Host = proxy.Addr()
	e := start(t, sim.Options{}, func(c *config.Config) { c.DatabaseURL = u.String() })
	ready := func() int {
		resp := e.do("GET", "/readyz", "")
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	if got := ready(); got != http.StatusOK {
		t.Fatalf("/readyz with PostgreSQL up: %d", got)
	}
	proxy.Stop()
	began := time.Now()
	if got := ready(); got != http.StatusServiceUnavailable {
		t.Fatalf("/readyz with PostgreSQL gone: %d, want 503", got)
	}
	if took := time.Since(began); took > 10*time.Second {
		t.Fatalf("/readyz took %v to answer with PostgreSQL gone", took)
	}
	// A new run is refused with 503 too, and nothing hangs.
	resp := e.do("POST", "/v1/threads", `{}`)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("creating a thread with PostgreSQL gone: %d, want 503", resp.StatusCode)
	}
}
