package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/config"
	"github.com/agentstream/agentstream/sim"
)

// stayResult is what script.mjs prints in its stay mode.
type stayResult struct {
	Opens  int      `json:"opens"`
	Errors []string `json:"errors"`
	Events []struct {
		LastEventID string `json:"lastEventId"`
		Type        string `json:"type"`
	} `json:"events"`
	Terminal string `json:"terminal"`
	TimedOut bool   `json:"timedOut"`
	Closed   bool   `json:"closed"`
}

// stayConnected runs the EventSource client on a run's events URL without
// ever closing it: it stops when the server tells it to.
func stayConnected(t *testing.T, node, url string) stayResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join(eventSourceDir, "script.mjs"), url, "30000", "stay")
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	var got stayResult
	if err := json.Unmarshal(stdout.Bytes(), &got); err != nil || runErr != nil {
		t.Fatalf("the EventSource client: %v; decoding its answer: %v\nstdout: %s\nstderr: %s", runErr, err, stdout.Bytes(), stderr.Bytes())
	}
	return got
}

// TestEventSourceStaysPastEnd: an EventSource that is never closed, reading
// a run live, after its end and after its log's retention, on every
// backend, gets the
// terminal event exactly once, under the id the run's log gave it; when
// it reconnects after the end it gets 204 and stops for good, instead of
// reconnecting every few seconds.
func TestEventSourceStaysPastEnd(t *testing.T) {
	t.Parallel()
	node := requireEventSourceClient(t)
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			eventSourcePastEnd(t, node, b)
		})
	}
}

func eventSourcePastEnd(t *testing.T, node string, b backend) {
	const retention = 300 * time.Millisecond
	e := b.start(t, sim.Options{Tokens: 200, Pace: 5 * time.Millisecond}, func(c *config.Config) {
		c.EventLog.Retention = retention
	})
	th := e.newThread(`{}`)

	// Live: the client joins a run going on.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r, resp := e.openStream(ctx, "POST", "/v1/threads/"+th.ID+"/runs", `{"input": "hi"}`, nil)
	runID := resp.Header.Get("X-Run-Id")
	readN(t, r, 2)
	live := stayConnected(t, node, e.url+"/v1/runs/"+runID+"/events")
	rest := readToEnd(t, r)
	endID := rest[len(rest)-1].ID

	// After its retention: its end comes from the store.
	time.Sleep(retention + 200*time.Millisecond)
	evicted := stayConnected(t, node, e.url+"/v1/runs/"+runID+"/events")

	for name, got := range map[string]stayResult{"live": live, "after retention": evicted} {
		terminals, lastID := 0, ""
		for _, ev := range got.Events {
			if agentstream.EventType(ev.Type).Terminal() {
				terminals++
				lastID = ev.LastEventID
			}
		}
		if terminals != 1 || got.Terminal != string(agentstream.EventRunCompleted) || lastID != endID {
			t.Errorf("%s: %d terminal events, the last %s at id %q; want run.completed once, at id %s", name, terminals, got.Terminal, lastID, endID)
		}
		// One stream, then one reconnection answered 204, which closes it.
		if !got.Closed || got.TimedOut || got.Opens != 1 {
			t.Errorf("%s: closed %v, timed out %v, %d opens (errors %q); want one open, then closed by the server", name, got.Closed, got.TimedOut, got.Opens, got.Errors)
		}
	}
}
