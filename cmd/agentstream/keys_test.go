package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/agentstream/agentstream/httpapi"
	"github.com/agentstream/agentstream/internal/testenv"
	"github.com/agentstream/agentstream/sim"
)

// runKeys runs the built `agentstream keys ARGS…` with no AGENTSTREAM_
// variables and returns its stdout, stderr and exit code.
func runKeys(t testing.TB, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(agentstreamBinary(t), append([]string{"keys"}, args...)...)
	cmd.Dir = t.TempDir()
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AGENTSTREAM_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatalf("agentstream keys %v: %v", args, err)
	}
	return out.String(), errOut.String(), code
}

var keyRE = regexp.MustCompile(`^ask_[A-Za-z0-9_-]{43}\n$`)

// createKeyCLI runs keys create and returns the key it printed.
func createKeyCLI(t testing.TB, dbURL, user string) string {
	t.Helper()
	out, errOut, code := runKeys(t, "create", "--database-url", dbURL, "--user", user, "--name", "test")
	if code != 0 || !keyRE.MatchString(out) || !strings.Contains(errOut, "shown once") {
		t.Fatalf("keys create: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	return strings.TrimSpace(out)
}

// keyIDOf returns the ID of the only key keys list shows for user, and
// checks the listing holds no key.
func keyIDOf(t testing.TB, dbURL, user, secret string) string {
	t.Helper()
	out, errOut, code := runKeys(t, "list", "--database-url", dbURL, "--user", user)
	if code != 0 {
		t.Fatalf("keys list: exit %d, %s", code, errOut)
	}
	if strings.Contains(out, secret[len("ask_"):]) {
		t.Fatalf("keys list shows the key:\n%s", out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "ID") || !strings.Contains(lines[1], user) ||
		!strings.Contains(lines[1], "…"+secret[len(secret)-4:]) {
		t.Fatalf("keys list --user %s:\n%s", user, out)
	}
	return strings.Fields(lines[1])[0]
}

// waitStatus polls GET path with bearer until it answers want, at most
// within; it returns how long that took.
func waitStatus(t testing.TB, p *serveProc, bearer string, want int, within time.Duration) time.Duration {
	t.Helper()
	h := map[string]string{}
	if bearer != "" {
		h["Authorization"] = "Bearer " + bearer
	}
	start := time.Now()
	for {
		got := p.status("GET", "/v1/threads", h)
		if got == want {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("%s: GET /v1/threads answered %d for %s, want %d", p.url, got, within, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// revokeBound is how soon a revoked key must be refused: the cache bound,
// and a margin for a loaded test machine.
const revokeBound = httpapi.StoredKeyCacheTTL + time.Second

// TestProcessKeysWhileServing: on SQLite, keys made, listed and revoked
// by the CLI while serve runs (holding the file's lock): a new key works
// at once, ends the local user, and a revoked one is refused within the
// documented bound.
func TestProcessKeysWhileServing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := filepath.Join(dir, "agentstream.db")
	model := startSim(t, func(*sim.Request) sim.Behavior { return sim.Behavior{Tokens: 3, Pace: -1, TTFT: -1} })
	p := startServe(t, writeConfig(t, dir, "runs:\n  checkpoint_interval: 200ms\n"), db, model.URL())
	if got := p.status("GET", "/v1/threads", nil); got != 200 {
		t.Fatalf("local mode: %d", got)
	}

	secret := createKeyCLI(t, db, "alice")
	if got := p.status("GET", "/v1/threads", map[string]string{"Authorization": "Bearer " + secret}); got != 200 {
		t.Fatalf("the new key at once: %d", got)
	}
	// Local mode ended: no credential is refused from now on.
	waitStatus(t, p, "", 401, revokeBound)
	if got := p.status("GET", "/v1/threads", map[string]string{"Authorization": "Bearer " + secret + "x"}); got != 401 {
		t.Fatalf("a wrong key: %d", got)
	}

	id := keyIDOf(t, db, "alice", secret)
	out, errOut, code := runKeys(t, "revoke", id, "--database-url", db)
	if code != 0 || !strings.Contains(out, "revoked key "+id) {
		t.Fatalf("keys revoke: exit %d, %q %q", code, out, errOut)
	}
	took := waitStatus(t, p, secret, 401, revokeBound)
	t.Logf("the revoked key was refused after %s", took)
	// Still no local user, with every key revoked.
	if got := p.status("GET", "/v1/threads", nil); got != 401 {
		t.Fatalf("no credential with only revoked keys: %d", got)
	}
	out, _, code = runKeys(t, "revoke", id, "--database-url", db)
	if code != 0 || !strings.Contains(out, "already revoked") {
		t.Fatalf("keys revoke again: exit %d, %q", code, out)
	}
	_, errOut, code = runKeys(t, "revoke", "key_NOPE", "--database-url", db)
	if code != 1 || !strings.Contains(errOut, `no key has the ID "key_NOPE"`) {
		t.Fatalf("keys revoke of an unknown ID: exit %d, %q", code, errOut)
	}
}

// TestKeysUsage: usage errors exit 2 with the usage; a store that is not
// there exits 1.
func TestKeysUsage(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "none.db")
	for _, tc := range []struct {
		args []string
		code int
		says string
	}{
		{nil, 2, "agentstream keys create --user NAME"},
		{[]string{"create", "--database-url", db}, 2, "--user NAME is required"},
		{[]string{"create", "--user", "a\x01", "--database-url", db}, 2, "not printable"},
		{[]string{"create", "--user", "ann", "extra", "--database-url", db}, 2, `unexpected argument "extra"`},
		{[]string{"revoke", "--database-url", db}, 2, "give the ID of one key"},
		{[]string{"rotate"}, 2, `unknown subcommand "rotate"`},
		{[]string{"list", "--nope"}, 2, "flag provided but not defined"},
		{[]string{"list", "--database-url", db}, 1, "no such file"},
		{[]string{"list", "--database-url", "mysql://x"}, 1, "unsupported scheme"},
	} {
		_, errOut, code := runKeys(t, tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.says) {
			t.Errorf("keys %q: exit %d, stderr %q; want %d saying %q", tc.args, code, errOut, tc.code, tc.says)
		}
	}
	if _, err := os.Stat(db); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused command created the database: %v", err)
	}
	out, _, code := runKeys(t, "help")
	if code != 0 || !strings.Contains(out, "keys revoke ID") {
		t.Fatalf("keys help: %d %q", code, out)
	}
}

// TestKeysConfigDatabaseURL: without --database-url the keys commands use
// the config file's database_url, as serve does.
func TestKeysConfigDatabaseURL(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := filepath.Join(dir, "from-config.db")
	cfg := writeConfig(t, dir, "database_url: "+db+"\n")
	out, errOut, code := runKeys(t, "create", "--config", cfg, "--user", "ann")
	if code != 0 || !keyRE.MatchString(out) || !strings.Contains(errOut, db) {
		t.Fatalf("keys create --config: exit %d, %q %q", code, out, errOut)
	}
	keyIDOf(t, db, "ann", strings.TrimSpace(out))
}

// TestClusterKeys: on PostgreSQL, a key made by the CLI works on both
// instances at once and, revoked, is refused by both within the bound.
func TestClusterKeys(t *testing.T) {
	t.Parallel()
	c := startClusterSpec(t, clusterSpec{n: 2, redisURL: testenv.RedisURL(t)})
	a, b := c.procs[0], c.procs[1]
	secret := createKeyCLI(t, c.dbURL, "alice")
	for _, p := range []*serveProc{a, b} {
		if got := p.status("GET", "/v1/threads", map[string]string{"Authorization": "Bearer " + secret}); got != 200 {
			t.Fatalf("%s: the new key at once: %d", p.url, got)
		}
	}
	id := keyIDOf(t, c.dbURL, "alice", secret)
	if _, errOut, code := runKeys(t, "revoke", id, "--database-url", c.dbURL); code != 0 {
		t.Fatalf("keys revoke: %d %s", code, errOut)
	}
	start := time.Now()
	waitStatus(t, a, secret, 401, revokeBound)
	waitStatus(t, b, secret, 401, revokeBound-time.Since(start))
	for _, p := range []*serveProc{a, b} {
		if got := p.status("GET", "/v1/threads", nil); got != 401 {
			t.Fatalf("%s: no credential once the store held a key: %d", p.url, got)
		}
	}
}

// TestServeBeyondLoopbackWithStoredKey: serve refuses an address beyond
// loopback with no identity (exit 1, naming agentstream keys create) and
// listens on it once keys create has stored a key in its database.
func TestServeBeyondLoopbackWithStoredKey(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "agentstream.db")
	serve := func() (*exec.Cmd, *procLog) {
		cmd := exec.Command(agentstreamBinary(t), "serve", "--addr", "0.0.0.0:0", "--database-url", db)
		cmd.Dir = t.TempDir()
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "AGENTSTREAM_") && !strings.HasPrefix(kv, "OPENAI_") {
				cmd.Env = append(cmd.Env, kv)
			}
		}
		log := &procLog{wrote: make(chan struct{}, 1)}
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd, log
	}
	cmd, log := serve()
	err := cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(log.String(), "agentstream keys create") {
		t.Fatalf("serve on 0.0.0.0 with no identity: %v\n%s", err, log.String())
	}
	createKeyCLI(t, db, "ops")
	cmd, log = serve()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // may have exited
		<-exited
	})
	deadline := time.After(procStartTimeout)
	for !strings.Contains(log.String(), "agentstream listening") {
		select {
		case <-log.wrote:
		case err := <-exited:
			exited <- err
			t.Fatalf("serve on 0.0.0.0 with a stored key exited: %v\n%s", err, log.String())
		case <-deadline:
			t.Fatalf("serve on 0.0.0.0 with a stored key did not listen:\n%s", log.String())
		}
	}
}
