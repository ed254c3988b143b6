//go:build unix

package main

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/agentstream/agentstream/mcp/mcptest"
)

// mcpConfig has MCP servers that only --connect finds wrong (a command
// that does not exist, an allow-list naming a tool the server lacks, two
// servers offering "echo"), one whose entry is wrong in the file (not
// tried), and a file problem besides.
func mcpConfig(url, missing string) string {
	return `mcp_servers:
  - name: good
    url: ` + url + `
    tools: [echo]
  - name: gone
    command: ` + missing + `
  - name: partial
    url: ` + url + `
    prefix: p_
    tools: [echo, no_such_tool]
  - name: twin
    url: ` + url + `
    tools: [echo]
  - name: both
    command: ` + missing + `
    url: ` + url + `
agents:
  - name: helper
    tools: [weather]
    mcp_servers: [good, gone, partial, twin]
`
}

// TestCheckConfigConnect: with --connect, the MCP servers that cannot be
// started or reached, and what they offer wrongly, are problems at their
// entries, with the file's own problems, in the file's order; without it,
// only the file is checked.
func TestCheckConfigConnect(t *testing.T) {
	t.Parallel()
	remote := mcptest.StartHTTP(t)
	missing := filepath.Join(t.TempDir(), "no-such-server")
	file := writeFile(t, "agentstream.yaml", mcpConfig(remote.URL, missing))

	var stdout, stderr bytes.Buffer
	code := run(context.Background(), func() {}, []string{"check-config", "--connect", file}, env(nil), &stdout, &stderr)
	want := []string{
		"agentstream check-config: invalid configuration (5 problems):",
		file + ":5:5: mcp_servers[1]: could not start: connecting: fork/exec " + missing + ": no such file or directory",
		file + ":10:5: mcp_servers[2].tools: the allow-list names tools the server does not have: no_such_tool",
		file + `:11:5: mcp_servers[3].prefix: its tool "echo" and the tool "echo" of MCP server "good" are both offered as "echo": give one server a prefix, or leave the tool out of an allow-list (tools)`,
		file + ":16:5: mcp_servers[4].url: set command (a program spoken to over stdio) or url (a Streamable HTTP endpoint), not both",
		file + `:19:13: agents[0].tools[0]: unknown tool "weather"; the tools are current_time, due_date`,
	}
	if code != 1 || stdout.Len() != 0 || strings.TrimSuffix(stderr.String(), "\n") != strings.Join(want, "\n") {
		t.Fatalf("exit %d, stdout %q, stderr:\n%s\nwant exit 1 and:\n%s", code, stdout.String(), stderr.String(), strings.Join(want, "\n"))
	}

	// Without --connect, the servers are not tried.
	stdout.Reset()
	stderr.Reset()
	code = run(context.Background(), func() {}, []string{"check-config", file}, env(nil), &stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "(2 problems)") || strings.Contains(stderr.String(), "could not start") {
		t.Fatalf("without --connect: exit %d, stderr:\n%s", code, stderr.String())
	}

	// A file whose servers all work: exit 0, and the summary says they
	// were tried.
	good := writeFile(t, "good.yaml", "mcp_servers:\n  - name: good\n    url: "+remote.URL+"\n")
	stdout.Reset()
	stderr.Reset()
	code = run(context.Background(), func() {}, []string{"check-config", good, "--connect"}, env(nil), &stdout, &stderr)
	if code != 0 || stderr.Len() != 0 || !strings.HasSuffix(stdout.String(), ", 1 MCP server (each started, its tools listed); agents without one use the simulated model unless OPENAI_API_KEY or OPENAI_BASE_URL is set\n") {
		t.Fatalf("a good file: exit %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	}
}

// TestProcessCheckConfigConnect: the built binary starts a stdio MCP
// server (a real child) and stops it, and reports one that cannot start.
func TestProcessCheckConfigConnect(t *testing.T) {
	t.Parallel()
	bin := agentstreamBinary(t)
	server := mcptest.Build(t)
	events := filepath.Join(t.TempDir(), "events")
	good := writeFile(t, "good.yaml", "mcp_servers:\n  - name: files\n    command: "+server+"\n    env: {"+mcptest.EventsVar+": "+events+"}\n")
	out, err := exec.Command(bin, "check-config", "--connect", good).Output()
	if err != nil || !strings.Contains(string(out), "1 MCP server (each started, its tools listed)") {
		t.Fatalf("check-config --connect on a good file: %v, %q", err, out)
	}
	// The server ran, and was stopped: its process is gone.
	evs := mcptest.FileEvents(t, events)
	if len(mcptest.Pids(evs)) != 1 {
		t.Fatalf("the server's events: %q", evs)
	}
	if err := syscall.Kill(mcptest.Pids(evs)[0], 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("the MCP server's process is still there after check-config (kill: %v)", err)
	}

	bad := writeFile(t, "bad.yaml", "mcp_servers:\n  - name: files\n    command: "+server+"\n    args: [--no-such-flag]\n")
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, "check-config", "--connect", bad)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	var exit *exec.ExitError
	if err := cmd.Run(); !errors.As(err, &exit) || exit.ExitCode() != 1 ||
		!strings.Contains(stderr.String(), bad+":2:5: mcp_servers[0]: could not start: connecting: ") ||
		!strings.Contains(stderr.String(), "flag provided but not defined: -no-such-flag") {
		t.Fatalf("check-config --connect on a server that cannot start: %v, stderr:\n%s", err, stderr.String())
	}
}
