//go:build unix

package main

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentstream/agentstream/sim"
)

// TestProcessRedisUnreachable: the real binary, given a Redis URL at a
// closed loopback port, prints one clear error and exits 1; go-redis's own
// log lines ("redis: … pool.go:770: …"), which it writes to the process's
// stderr itself, are not among them.
func TestProcessRedisUnreachable(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close() // connections to it are now refused

	ctx, cancel := context.WithTimeout(context.Background(), 2*procStartTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, agentstreamBinary(t), "serve", "--addr", "127.0.0.1:0",
		"--database-url", filepath.Join(t.TempDir(), "a.db"), "--redis-url", "redis://"+addr+"/0")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AGENTSTREAM_") && !strings.HasPrefix(kv, "OPENAI_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	start := time.Now()
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("exit: %v after %s, want exit 1; output:\n%s", err, time.Since(start), out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	want := "agentstream serve: opening the Redis event log: redislog: Redis at " + addr + " is unreachable"
	if len(lines) != 1 || !strings.HasPrefix(lines[0], want) {
		t.Fatalf("output:\n%s\nwant one line starting %q", out, want)
	}
	if strings.Contains(string(out), "pool.go") {
		t.Fatalf("go-redis's own log lines leaked:\n%s", out)
	}
}

// TestSetGC: without GOGC in the environment (or with it empty, which Go
// takes as unset), serve sets the collector to defaultGOGC; with it set,
// Go's runtime has applied it and serve leaves it.
func TestSetGC(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		env     map[string]string
		set     int // what setGC set; -2 for nothing
		gogc    string
		fromEnv bool
	}{
		{nil, defaultGOGC, "50", false},
		{map[string]string{"GOGC": ""}, defaultGOGC, "50", false},
		{map[string]string{"GOGC": "100"}, -2, "100", true},
		{map[string]string{"GOGC": "off"}, -2, "off", true},
	} {
		set := -2
		gogc, from := setGC(func(k string) string { return tc.env[k] }, func(p int) int { set = p; return 100 })
		if set != tc.set || gogc != tc.gogc || (from == "the environment") != tc.fromEnv {
			t.Errorf("env %v: set %d, GOGC %q from %q; want set %d, GOGC %q, from the environment %v", tc.env, set, gogc, from, tc.set, tc.gogc, tc.fromEnv)
		}
	}
}

// TestProcessGOGC: the real binary says in its log which GOGC applies:
// agentstream's default without GOGC in its environment, the
// environment's with it.
func TestProcessGOGC(t *testing.T) {
	t.Parallel()
	model := startSim(t, func(*sim.Request) sim.Behavior { return sim.Behavior{Tokens: 1, Pace: -1, TTFT: -1} })
	for _, tc := range []struct {
		env, want string
	}{
		{"GOGC=", `msg="garbage collector" GOGC=50 from="agentstream's default (set GOGC to change it)"`},
		{"GOGC=120", `msg="garbage collector" GOGC=120 from="the environment"`},
	} {
		dir := t.TempDir()
		p := startServeEnv(t, writeConfig(t, dir, ""), filepath.Join(dir, "a.db"), model.URL(), []string{tc.env})
		if log := p.log.String(); !strings.Contains(log, tc.want) {
			t.Errorf("with %s, the log lacks %s:\n%s", tc.env, tc.want, log)
		}
		p.stopGracefully(procStartTimeout)
	}
}
