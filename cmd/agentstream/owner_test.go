//go:build unix

package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/sim"
	"github.com/agentstream/agentstream/sqlite"
)

// serveFails runs `agentstream serve` on the SQLite file db, expects it
// to exit with status 1 before listening, and returns its output.
func serveFails(t testing.TB, configFile, db, modelURL string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), procStartTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, agentstreamBinary(t), "serve", "--config", configFile, "--addr", "127.0.0.1:0", "--database-url", db)
	cmd.Dir = t.TempDir()
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AGENTSTREAM_") && !strings.HasPrefix(kv, "OPENAI_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "OPENAI_BASE_URL="+modelURL, "OPENAI_API_KEY=sk-test")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("a second serve on %s: %v, want exit status 1; output:\n%s", db, err, out)
	}
	if listeningRE.Match(out) {
		t.Fatalf("a second serve on %s listened before exiting:\n%s", db, out)
	}
	return string(out)
}

// lockOwner reads the owner a SQLite file's lock file records.
func lockOwner(t testing.TB, db string) sqlite.Owner {
	t.Helper()
	b, err := os.ReadFile(db + ".lock")
	if err != nil {
		t.Fatalf("the lock file: %v", err)
	}
	var o sqlite.Owner
	if err := json.Unmarshal(b, &o); err != nil {
		t.Fatalf("the lock file %q: %v", b, err)
	}
	return o
}

// TestProcessOneServePerSQLiteFile: a second `serve` on a SQLite file
// another serve owns refuses to start, naming the file and the owner's
// PID, and leaves the owner's running run alone: it completes and its
// answer is stored. Once the owner stops, the file is free again.
func TestProcessOneServePerSQLiteFile(t *testing.T) {
	t.Parallel()
	const q = "what is the current_time?" // a tool call, then an answer
	// The answer after the tool call waits for release, so the run is
	// certainly running while the second serve starts.
	release, done := make(chan struct{}), make(chan struct{})
	model := startSim(t, func(r *sim.Request) sim.Behavior {
		if r.LastMessage().Role == "tool" {
			select {
			case <-release:
			case <-done:
			}
			return sim.Behavior{Tokens: 20, Pace: 5 * time.Millisecond, TTFT: -1}
		}
		return sim.Behavior{}
	})
	t.Cleanup(func() { close(done) }) // before the simulator closes

	dir := t.TempDir()
	db := filepath.Join(dir, "a.db")
	cfg := writeConfig(t, dir, "http:\n  shutdown_timeout: 10s\n")
	x := startServe(t, cfg, db, model.URL())
	th := x.newThread()
	s := x.openStream("POST", "/v1/threads/"+th.ID+"/runs", `{"input": "`+q+`"}`, nil)
	s.readUntil("the tool result", isType(agentstream.EventToolResult))

	out := serveFails(t, cfg, db, model.URL())
	if pid := strconv.Itoa(x.cmd.Process.Pid); !strings.Contains(out, db) || !strings.Contains(out, "process "+pid) {
		t.Fatalf("the refusal does not name %s and pid %s:\n%s", db, pid, out)
	}
	if strings.Contains(out, "marked interrupted") {
		t.Fatalf("the refused serve recovered runs:\n%s", out)
	}
	t.Logf("the second serve said: %s", strings.TrimSpace(out))
	if run := x.getRun(s.runID); run.Status != agentstream.RunRunning {
		t.Fatalf("after the refused serve the run is %s, want running", run.Status)
	}

	close(release)
	end, data := s.readToEnd()
	if end.Type != string(agentstream.EventRunCompleted) || data.Status != agentstream.RunCompleted || s.text == "" {
		t.Fatalf("the run ended %s %+v (text %q), want run.completed with an answer", end.Type, data, s.text)
	}
	if run := x.getRun(s.runID); run.Status != agentstream.RunCompleted || run.Error != nil {
		t.Fatalf("the stored run: %+v", run)
	}
	msgs := x.messages(th.ID)
	if last := msgs[len(msgs)-1]; len(msgs) != 4 || last.Role != agentstream.RoleAssistant ||
		last.Status != agentstream.MessageComplete || last.Content != s.text || last.RunID != s.runID {
		t.Fatalf("the thread (streamed %q): %+v", s.text, msgs)
	}

	x.stopGracefully(procExitSlack)
	if _, err := os.Stat(db + ".lock"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the lock file after a clean stop: %v, want it removed", err)
	}
}

// TestProcessOwnerKilled: kill -9 of the serve that owns a SQLite file
// leaves its lock file, naming it, but not its lock: the next serve
// starts, records itself as the owner, and ends the dead one's run
// interrupted.
func TestProcessOwnerKilled(t *testing.T) {
	t.Parallel()
	const q = "tell me a long story"
	model := startSim(t, func(r *sim.Request) sim.Behavior {
		if question(r) == q {
			return sim.Behavior{Tokens: 1000, Pace: 10 * time.Millisecond, Fault: sim.FaultStall, FaultAfter: 5}
		}
		return sim.Behavior{Tokens: 5, Pace: -1, TTFT: -1, Fault: sim.FaultNone}
	})
	dir := t.TempDir()
	db := filepath.Join(dir, "a.db")
	cfg := writeConfig(t, dir, "runs:\n  checkpoint_interval: 200ms\n")
	x := startServe(t, cfg, db, model.URL())
	th := x.newThread()
	s := x.openStream("POST", "/v1/threads/"+th.ID+"/runs", `{"input": "`+q+`"}`, nil)
	s.readUntil("the first delta", isType(agentstream.EventMessageDelta))
	if o := lockOwner(t, db); o.PID != x.cmd.Process.Pid {
		t.Fatalf("the lock file names %+v, want pid %d", o, x.cmd.Process.Pid)
	}

	if err := x.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	if st := x.waitExit(procExitSlack); st.Success() {
		t.Fatalf("SIGKILL: %v", st)
	}
	if o := lockOwner(t, db); o.PID != x.cmd.Process.Pid {
		t.Fatalf("after the kill the lock file names %+v, want the dead pid %d", o, x.cmd.Process.Pid)
	}

	y := startServe(t, cfg, db, model.URL())
	if log := y.log.String(); !strings.Contains(log, "marked interrupted") || !strings.Contains(log, "runs=1") {
		t.Fatalf("the next serve does not say it recovered one run:\n%s", log)
	}
	if o := lockOwner(t, db); o.PID != y.cmd.Process.Pid {
		t.Fatalf("the lock file names %+v, want the new owner's pid %d", o, y.cmd.Process.Pid)
	}
	if run := y.getRun(s.runID); run.Status != agentstream.RunInterrupted || run.Error == nil ||
		run.Error.Code != agentstream.CodeInterrupted || run.FinishedAt == nil {
		t.Fatalf("the killed serve's run: %+v", run)
	}
	// The new owner holds the file as the old one did.
	if out := serveFails(t, cfg, db, model.URL()); !strings.Contains(out, "process "+strconv.Itoa(y.cmd.Process.Pid)) {
		t.Fatalf("a third serve's refusal does not name the new owner %d:\n%s", y.cmd.Process.Pid, out)
	}
	y.stopGracefully(procExitSlack)
}
