package server_test

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/config"
	"github.com/agentstream/agentstream/server"
	"github.com/agentstream/agentstream/sim"
)

// TestListenBeyondLoopbackWithStoredKeys: with no identity configured, a
// server listens beyond loopback only once its store holds a key (even a
// revoked one); then every request needs a credential. On both stores.
func TestListenBeyondLoopbackWithStoredKeys(t *testing.T) {
	t.Parallel()
	for _, b := range storeBackends() {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			services := b.services(t)
			cfg := config.Config{Addr: "0.0.0.0:0"}
			services(&cfg)
			cfg.OpenAI = config.OpenAI{APIKey: "sk-test", BaseURL: "http://127.0.0.1:1"}
			_, err := server.New(context.Background(), cfg, nil)
			if err == nil || !strings.Contains(err.Error(), "agentstream keys create") {
				t.Fatalf("no identity, no stored key, addr 0.0.0.0: %v; want a refusal naming agentstream keys create", err)
			}
			ks := openStore(t, cfg.DatabaseURL).(agentstream.KeyStore)
			secret, k := agentstream.NewAPIKey("dora", "", time.Now())
			if err := ks.CreateKey(t.Context(), k); err != nil {
				t.Fatal(err)
			}
			if _, err := ks.RevokeKey(t.Context(), k.ID, time.Now()); err != nil {
				t.Fatal(err)
			}
			_ = ks.(agentstream.Store).Close() // the SQLite file is the server's now
			srv, err := server.New(context.Background(), cfg, nil)
			if err != nil {
				t.Fatalf("with a stored (revoked) key: %v", err)
			}
			go func() { _ = srv.Serve() }()
			t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
			_, port, _ := strings.Cut(srv.Addr(), "]:")
			if port == "" {
				_, port, _ = strings.Cut(srv.Addr(), ":")
			}
			for _, bearer := range []string{"", secret} {
				req, _ := http.NewRequest("GET", "http://127.0.0.1:"+port+"/v1/threads", nil)
				if bearer != "" {
					req.Header.Set("Authorization", "Bearer "+bearer)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				_ = resp.Body.Close()
				if resp.StatusCode != http.StatusUnauthorized {
					t.Fatalf("bearer %q: %d, want 401 (no local user once a key was stored)", bearer, resp.StatusCode)
				}
			}
		})
	}
}

// TestConfigKeysWarning: plain-text auth.keys are warned of once at
// start, by number, never shown.
func TestConfigKeysWarning(t *testing.T) {
	t.Parallel()
	var logs lockedBuffer
	startLogged(t, sim.Options{}, func(c *config.Config) {
		c.Auth.Keys = []config.APIKey{{Key: keyAda, User: "ada"}, {Key: keyBob, User: "bob"}}
	}, slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	out := logs.String()
	if strings.Count(out, "auth.keys holds API keys in plain text") != 1 || !strings.Contains(out, "keys=2") ||
		!strings.Contains(out, "agentstream keys create") {
		t.Fatalf("start logs:\n%s", out)
	}
	if strings.Contains(out, keyAda) || strings.Contains(out, keyBob) {
		t.Fatalf("the logs show a key:\n%s", out)
	}
}

// TestStoredKeyPostgresDown: PostgreSQL unreachable, a stored key the
// server has not just checked is 503 unavailable, not 401; the database
// back, the key works again.
func TestStoredKeyPostgresDown(t *testing.T) {
	t.Parallel()
	e, proxy := postgresBehindProxy(t, sim.Options{}, func(c *config.Config) {
		c.Auth.Keys = []config.APIKey{{Key: keyAda, User: "ada"}}
	})
	ks := openStore(t, e.srv.Config().DatabaseURL).(agentstream.KeyStore)
	secret, k := agentstream.NewAPIKey("dora", "", time.Now())
	if err := ks.CreateKey(t.Context(), k); err != nil {
		t.Fatal(err)
	}
	proxy.SetDown(true)
	resp := e.request("GET", "/v1/agents", "", bearerOf(secret))
	if got := errorBody(t, resp); resp.StatusCode != http.StatusServiceUnavailable || got.Code != agentstream.CodeUnavailable {
		t.Fatalf("a stored key with PostgreSQL down: %d %+v; want 503 unavailable", resp.StatusCode, got)
	}
	_ = resp.Body.Close()
	// A config key needs no store.
	if got := e.status("GET", "/v1/agents", bearerOf(keyAda)); got != http.StatusOK {
		t.Fatalf("a config key with PostgreSQL down: %d", got)
	}
	proxy.SetDown(false)
	deadline := time.Now().Add(30 * time.Second)
	for e.status("GET", "/v1/agents", bearerOf(secret)) != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("the stored key does not work once PostgreSQL is back")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
