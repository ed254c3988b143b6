package main

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/agentstream/agentstream/internal/testenv"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestLoadConfigPrecedence(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(file, []byte("addr: 127.0.0.1:1001\nmodel: from-file\ndatabase_url: file.db\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cfg, err := loadConfig([]string{"--addr", "127.0.0.1:1003"}, env(map[string]string{
		"AGENTSTREAM_CONFIG": file, "AGENTSTREAM_ADDR": "127.0.0.1:1002", "AGENTSTREAM_MODEL": "from-env",
		"OPENAI_API_KEY": "sk-env", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
	}), &stderr)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Addr != "127.0.0.1:1003" || cfg.Model != "from-env" || cfg.DatabaseURL != "file.db" ||
		cfg.OpenAI.APIKey != "sk-env" || cfg.OpenAI.BaseURL != "http://127.0.0.1:9/v1" {
		t.Fatalf("config %+v: want flag > env > file", cfg)
	}
}

func TestRunErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("adr: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no command", nil, 2, "Usage"},
		{"unknown command", []string{"fly"}, 2, `unknown command "fly"`},
		{"bad flag", []string{"serve", "--bogus"}, 2, "flag provided but not defined"},
		{"stray argument", []string{"serve", "extra"}, 2, `unexpected argument "extra"`},
		{"missing config file", []string{"serve", "--config", filepath.Join(dir, "none.yaml")}, 2, "reading the config file"},
		{"unknown config key", []string{"serve", "--config", bad}, 2, "adr"},
		{"bad log level", []string{"serve", "--log-level", "loud"}, 2, "--log-level"},
		{"public address without keys", []string{"serve", "--addr", "0.0.0.0:0", "--database-url", filepath.Join(dir, "a.db")}, 1, `addr "0.0.0.0:0" is not a loopback address, and no identity is configured nor any API key stored: create one with agentstream keys create`},
		{"postgres not built", []string{"serve", "--addr", "127.0.0.1:0", "--database-url", "postgres://x@127.0.0.1/db"}, 1, "PostgreSQL"},
		{"bad sim fault", []string{"sim", "--fault", "explode"}, 2, "unknown fault"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), func() {}, tt.args, env(nil), &stdout, &stderr)
			if code != tt.code || !strings.Contains(stderr.String()+stdout.String(), tt.want) {
				t.Fatalf("exit %d, output %q; want exit %d and %q", code, stderr.String(), tt.code, tt.want)
			}
		})
	}
}

// TestServeReportsEveryConfigProblem: serve with a config file holding
// five mistakes prints all five, each with the file's name and its line,
// plus the bad environment variable, and starts nothing.
func TestServeReportsEveryConfigProblem(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "agentstream.yaml")
	if err := os.WriteFile(file, []byte(`addr: 127.0.0.1:0
adr: 127.0.0.1:1
runs:
  tool_timout: 5s
  tool_timeout: 30
http:
  heartbeat: soon
agents:
  - name: helper
    tools: [current_time, weather]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), func() {}, []string{"serve", "--config", file, "--database-url", filepath.Join(dir, "a.db")},
		env(map[string]string{"AGENTSTREAM_DEBUG_ADDR": "0.0.0.0:6060"}), &stdout, &stderr)
	want := []string{
		"agentstream serve: invalid configuration (6 problems):",
		file + ":2:1: adr: unknown key; did you mean addr?",
		file + ":4:3: runs.tool_timout: unknown key; did you mean runs.tool_timeout?",
		file + ":5:17: runs.tool_timeout: 30 is not a duration; durations need a unit, e.g. 30s",
		file + `:7:14: http.heartbeat: "soon" is not a duration; write a number and a unit`,
		file + `:10:27: agents[0].tools[1]: unknown tool "weather"; the tools are current_time, due_date`,
		`env AGENTSTREAM_DEBUG_ADDR: debug_addr: "0.0.0.0:6060" is not a loopback address`,
	}
	lines := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n")
	if code != 2 || len(lines) != len(want) {
		t.Fatalf("exit %d, stderr:\n%s\nwant exit 2 and %d lines", code, stderr.String(), len(want))
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("line %d: %q, want %q", i+1, lines[i], w)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "a.db")); !os.IsNotExist(err) {
		t.Errorf("a bad config created the database: %v", err)
	}
}

// TestHelp: every command's help says what its flags take, each default
// once.
func TestHelp(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		env  map[string]string
		want []string
	}{
		{[]string{"serve", "--help"}, map[string]string{"AGENTSTREAM_CONFIG": "/etc/agentstream.yaml"}, []string{
			"Usage: agentstream serve [flags]",
			"-database-url URL", "a SQLite file path (or sqlite://PATH) or a postgres:// URL", "AGENTSTREAM_DATABASE_URL",
			"-log-level level", "debug, info, warn or error", "-redis-url URL", "AGENTSTREAM_REDIS_URL",
			"-addr address", "AGENTSTREAM_ADDR", "-model name", "AGENTSTREAM_MODEL", "-debug-addr address", "-config file", "AGENTSTREAM_CONFIG",
		}},
		{[]string{"bench", "-h"}, nil, []string{"-direct N", "(default min(streams, 50); 0 for none)\n", "-sim-url URL", "-compare N"}},
		{[]string{"bench", "relay", "-h"}, nil, []string{"-model-url", "-h2c"}},
		{[]string{"sim", "-h"}, nil, []string{"Usage: agentstream sim [flags]", "parallel tool calls", "X-Sim-Arguments: wrong",
			"-pace duration", "negative: none, 0: the default (default 20ms)", "-fault string"}},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), func() {}, tt.args, env(tt.env), &stdout, &stderr)
		help := stderr.String()
		if code != 0 {
			t.Errorf("%q: exit %d", tt.args, code)
		}
		for _, w := range tt.want {
			if !strings.Contains(help, w) {
				t.Errorf("%q help lacks %q:\n%s", tt.args, w, help)
			}
		}
		for _, v := range tt.env {
			if strings.Contains(help, v) {
				t.Errorf("%q help shows the environment's %q as a default:\n%s", tt.args, v, help)
			}
		}
		for line := range strings.SplitSeq(help, "\n") {
			if strings.Count(line, "(default") > 1 || strings.Contains(line, "(default -1)") {
				t.Errorf("%q help: a default given twice, or a sentinel shown: %q", tt.args, line)
			}
		}
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	var stdout bytes.Buffer
	if code := run(context.Background(), func() {}, []string{"version"}, env(nil), &stdout, &stdout); code != 0 || !strings.HasPrefix(stdout.String(), "agentstream ") {
		t.Fatalf("exit %d, %q", code, stdout.String())
	}
}

// syncBuffer is written by one goroutine while the test reads it.
type syncBuffer = testenv.Buffer

// TestServeUntilSignal: serve starts on its defaults (simulated model, a
// SQLite file), answers, and stops cleanly when its context ends, as on
// SIGTERM.
func TestServeUntilSignal(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stderr syncBuffer
	db := filepath.Join(t.TempDir(), "agentstream.db")
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, func() {}, []string{"serve", "--addr", "127.0.0.1:0", "--database-url", db}, env(nil), &stderr, &stderr)
	}()
	listening := regexp.MustCompile(`addr=http://(127\.0\.0\.1:\d+)`)
	var addr string
	for deadline := time.Now().Add(10 * time.Second); addr == ""; {
		if m := listening.FindStringSubmatch(stderr.String()); m != nil {
			addr = m[1]
		} else if time.Now().After(deadline) {
			t.Fatalf("serve did not start: %s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(stderr.String(), "simulated model") {
		t.Fatalf("start-up does not say the model is simulated: %s", stderr.String())
	}
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("readyz: %v %v", resp, err)
	}
	_ = resp.Body.Close()
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop")
	}
	if _, err := os.Stat(db); err != nil {
		t.Fatalf("the SQLite file: %v", err)
	}
}
