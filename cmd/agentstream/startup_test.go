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
