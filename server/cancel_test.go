package server_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/config"
	"github.com/agentstream/agentstream/sim"
)

// TestCancelTrimmedRun: cancelling a long run whose log has dropped its
// first events (event_log.max_run_bytes) answers 200 with the run ended
// cancelled, on memlog and on Redis (it used to read the log from its
// start, get "gone", stop waiting and answer 202 with the run running).
// On every backend.
func TestCancelTrimmedRun(t *testing.T) {
	t.Parallel()
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			// The log keeps about 80 events: room for this test's own
			// reader to lag on a busy machine (with 3,000 bytes and a 2 ms
			// pace it fell behind and lost its stream under CI's load).
			e := b.start(t, sim.Options{Tokens: 5000, Pace: 5 * time.Millisecond}, func(c *config.Config) {
				c.EventLog.MaxRunBytes = 8000
			})
			th := e.newThread(`{}`)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			r, resp := e.openStream(ctx, "POST", "/v1/threads/"+th.ID+"/runs", `{"input": "long"}`, nil)
			runID := resp.Header.Get("X-Run-Id")
			// Far past the first 8,000 bytes of events: the log has dropped
			// its head.
			readN(t, r, 300)
			if status := e.status("GET", "/v1/runs/"+runID+"/events?after=0", nil); status != http.StatusGone {
				t.Fatalf("reading the trimmed run from its start: %d, want 410", status)
			}
			var run agentstream.Run
			e.json("POST", "/v1/runs/"+runID+"/cancel", "", http.StatusOK, &run)
			if run.Status != agentstream.RunCancelled || run.FinishedAt == nil {
				t.Fatalf("cancel answered %+v, want the run ended cancelled", run)
			}
			evs := readToEnd(t, r)
			if last := evs[len(evs)-1]; last.Type != string(agentstream.EventRunCancelled) {
				t.Fatalf("the stream ended %s", last.Type)
			}
			// Cancelling it again: it has ended.
			e.json("POST", "/v1/runs/"+runID+"/cancel", "", http.StatusConflict, nil)
		})
	}
}
