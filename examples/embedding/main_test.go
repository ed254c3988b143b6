//go:build unix

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/internal/sse"
	"github.com/agentstream/agentstream/internal/testenv"
)

// Generous bounds: a race-enabled build and run on a loaded two-core
// machine.
const (
	buildTimeout = 5 * time.Minute
	readyTimeout = 60 * time.Second
	runTimeout   = 60 * time.Second
	exitTimeout  = 60 * time.Second
)

const (
	aliceKey = "alice-key-0123456789"
	bobKey   = "bob-key-0123456789ab"
)

// raceEnabled reports whether this test was built with -race; the example
// is then built with it too, so a data race fails its exit status.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// lockedBuffer is written by one goroutine while the test reads it.
type lockedBuffer = testenv.Buffer

// freeAddr returns a loopback address no one listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// TestExample builds the example, runs it as a real process with two
// users' keys and the simulated model, and checks that its Go tool,
// called through the HTTP API, answers for the user of the run: in the
// stream and in the stored thread. SIGTERM then stops it cleanly.
func TestExample(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "embedding")
	args := []string{"build", "-o", bin}
	if raceEnabled() {
		args = append(args, "-race")
	}
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	// go test puts its own GOROOT/bin first on PATH.
	if out, err := exec.CommandContext(ctx, "go", append(args, ".")...).CombinedOutput(); err != nil {
		t.Fatalf("go %s .: %v\n%s", strings.Join(args, " "), err, out)
	}

	addr := freeAddr(t)
	cmd := exec.Command(bin, "-addr", addr, "-db", filepath.Join(dir, "example.db"), "-keys", aliceKey+"=alice,"+bobKey+"=bob")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OPENAI_") { // the simulated model
			cmd.Env = append(cmd.Env, kv)
		}
	}
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait() // the outcome is cmd.ProcessState
		close(exited)
	}()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("the example's output:\n%s", out.String())
		}
	})
	base := "http://" + addr
	client := &http.Client{Timeout: runTimeout}
	waitReady(t, client, base, exited)

	for _, tc := range []struct {
		key, user string
		isErr     bool
		output    string
	}{
		{aliceKey, "alice", false, `{"order_id":"A-1001","status":"shipped","user":"alice"}`},
		{bobKey, "bob", true, "error: user bob has no order A-1001"},
	} {
		t.Run(tc.user, func(t *testing.T) {
			var th agentstream.Thread
			call(t, client, tc.key, "POST", base+"/v1/threads", `{}`, http.StatusCreated, &th)
			if th.UserID != tc.user || th.Agent != "shop" {
				t.Fatalf("thread %+v", th)
			}
			evs := stream(t, client, tc.key, base+"/v1/threads/"+th.ID+"/runs", `{"input": "Where is my order? Check order_status."}`)
			var result agentstream.ToolResultData
			var end agentstream.RunEndData
			var answer string
			for _, ev := range evs {
				switch ev.Type {
				case string(agentstream.EventToolResult):
					if err := json.Unmarshal([]byte(ev.Data), &result); err != nil {
						t.Fatal(err)
					}
				case string(agentstream.EventMessageCompleted):
					var m agentstream.MessageCompletedData
					if err := json.Unmarshal([]byte(ev.Data), &m); err != nil {
						t.Fatal(err)
					}
					answer = m.Content
				case string(agentstream.EventRunCompleted):
					if err := json.Unmarshal([]byte(ev.Data), &end); err != nil {
						t.Fatal(err)
					}
				}
			}
			if end.Status != agentstream.RunCompleted || result.Name != "order_status" || result.IsError != tc.isErr || result.Output != tc.output {
				t.Fatalf("end %+v, tool result %+v; want output %s", end, result, tc.output)
			}
			if want := "[simulated] The tool order_status returned: " + tc.output + "."; answer != want {
				t.Fatalf("answer %q, want %q", answer, want)
			}
			var msgs struct {
				Data []agentstream.Message `json:"data"`
			}
			call(t, client, tc.key, "GET", base+"/v1/threads/"+th.ID+"/messages", "", http.StatusOK, &msgs)
			m := msgs.Data
			if len(m) != 4 || m[1].ToolCalls[0].Name != "order_status" || m[2].Role != agentstream.RoleTool ||
				m[2].Content != tc.output || m[3].Content != answer {
				t.Fatalf("stored messages %+v", m)
			}
		})
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
		if code := cmd.ProcessState.ExitCode(); code != 0 {
			t.Fatalf("exit status %d after SIGTERM, want 0", code)
		}
	case <-time.After(exitTimeout):
		t.Fatalf("still running %s after SIGTERM", exitTimeout)
	}
}

// waitReady polls /readyz until it answers 200.
func waitReady(t *testing.T, client *http.Client, base string, exited <-chan struct{}) {
	t.Helper()
	deadline := time.Now().Add(readyTimeout)
	for {
		resp, err := client.Get(base + "/readyz")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-exited:
			t.Fatal("the example exited before it was ready")
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready within %s (last: %v)", readyTimeout, err)
		}
	}
}

func request(t *testing.T, key, method, url, body string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	return req
}

// call sends a request and decodes its JSON answer of the wanted status.
func call(t *testing.T, client *http.Client, key, method, url, body string, want int, v any) {
	t.Helper()
	resp, err := client.Do(request(t, key, method, url, body))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != want {
		t.Fatalf("%s %s: status %d (%v): %s", method, url, resp.StatusCode, err, data)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s %s: %s: %v", method, url, data, err)
	}
}

// stream starts a run and reads its native stream to the end.
func stream(t *testing.T, client *http.Client, key, url, body string) []sse.Event {
	t.Helper()
	resp, err := client.Do(request(t, key, "POST", url, body))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(resp.Body)
		t.Fatalf("POST %s: status %d: %s", url, resp.StatusCode, data)
	}
	var evs []sse.Event
	r := sse.NewReader(resp.Body)
	for {
		ev, err := r.Next()
		if errors.Is(err, io.EOF) {
			return evs
		}
		if err != nil {
			t.Fatal(fmt.Errorf("reading the stream after %d events: %w", len(evs), err))
		}
		evs = append(evs, ev)
	}
}
