package server_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/config"
	"github.com/agentstream/agentstream/internal/sse"
	"github.com/agentstream/agentstream/internal/testenv"
	"github.com/agentstream/agentstream/sim"
)

// graceRun is a run that streams for about 4 seconds, twice testGrace, so
// that it is still going when the grace ends.
var graceRun = sim.Options{Tokens: 400, Pace: 10 * time.Millisecond}

const testGrace = 2 * time.Second

// startLeaving starts a run on e with on_disconnect cancel, reads its
// first events, and returns them and the run's id; the client leaves
// with leave.
func startLeaving(t *testing.T, e *env) (head []sse.Event, runID string, leave context.CancelFunc) {
	t.Helper()
	th := e.newThread(`{}`)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	r, resp := e.openStream(ctx, "POST", "/v1/threads/"+th.ID+"/runs", `{"input": "hi", "on_disconnect": "cancel"}`, nil)
	return readN(t, r, 4), resp.Header.Get("X-Run-Id"), cancel // to the first delta
}

// resume reads the run from after its head, through e, to its end, and
// checks the whole run completed.
func resume(t *testing.T, e *env, runID string, head []sse.Event) {
	t.Helper()
	r, _ := e.openStream(context.Background(), "GET", "/v1/runs/"+runID+"/events", "", map[string]string{"Last-Event-ID": head[len(head)-1].ID})
	if n := checkNative(t, append(head, readToEnd(t, r)...)); n.end.Status != agentstream.RunCompleted {
		t.Fatalf("the resumed run ended %+v", n.end)
	}
}

// cancelledAfterGrace checks the run, whose client left at left, is
// cancelled, and not before the grace.
func cancelledAfterGrace(t *testing.T, e *env, runID string, left time.Time) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testGrace+time.Minute)
	defer cancel()
	if err := e.sim.WaitCanceled(ctx, 1); err != nil {
		t.Fatalf("the run's model request was never cancelled: %v", err)
	}
	if took := time.Since(left); took < testGrace {
		t.Fatalf("the run was cancelled %s after its client left, within the grace (%s)", took, testGrace)
	}
	if run := waitRunEnd(t, e, runID); run.Status != agentstream.RunCancelled {
		t.Fatalf("the run ended %s, want cancelled", run.Status)
	}
}

// TestDisconnectGrace: with on_disconnect cancel, a run whose client left
// goes on for runs.disconnect_grace; a reader that comes meanwhile keeps
// it to the end, and without one it is cancelled once the grace is over.
func TestDisconnectGrace(t *testing.T) {
	t.Parallel()
	withGrace := func(c *config.Config) { c.Runs.DisconnectGrace = testGrace }
	t.Run("the client comes back", func(t *testing.T) {
		t.Parallel()
		e := start(t, graceRun, withGrace)
		head, runID, leave := startLeaving(t, e)
		leave()
		resume(t, e, runID, head)
	})
	t.Run("a reader comes and goes", func(t *testing.T) {
		t.Parallel()
		e := start(t, graceRun, withGrace)
		_, runID, leave := startLeaving(t, e)
		leave()
		ctx, cancel := context.WithCancel(context.Background())
		r, _ := e.openStream(ctx, "GET", "/v1/runs/"+runID+"/events", "", nil)
		readN(t, r, 1)
		cancel()
		if run := waitRunEnd(t, e, runID); run.Status != agentstream.RunCompleted {
			t.Fatalf("the run ended %s, want completed", run.Status)
		}
	})
	t.Run("nobody comes back", func(t *testing.T) {
		t.Parallel()
		e := start(t, graceRun, withGrace)
		_, runID, leave := startLeaving(t, e)
		leave()
		cancelledAfterGrace(t, e, runID, time.Now())
	})
	t.Run("the client came and left before", func(t *testing.T) {
		t.Parallel()
		// A reader gone before the starting client left does not keep
		// the run. (This one is refused, so it is surely gone, on the
		// server too, once its answer has come: the server forgets a
		// reader before its answer leaves.)
		e := start(t, graceRun, withGrace)
		_, runID, leave := startLeaving(t, e)
		if resp := e.do("GET", "/v1/runs/"+runID+"/events?after=x", ""); resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("status %d", resp.StatusCode)
		}
		leave()
		cancelledAfterGrace(t, e, runID, time.Now())
	})
}

// TestDisconnectGraceAcrossInstances: two instances sharing PostgreSQL
// and Redis; a run started on one whose client left is kept by a reader
// on the other, whether it came during the grace or was there before.
func TestDisconnectGraceAcrossInstances(t *testing.T) {
	t.Parallel()
	redisURL := testenv.RedisURL(t)
	pair := func(t *testing.T) (a, b *env) {
		_, dbURL := testenv.PostgresSchema(t)
		prefix := testenv.RedisPrefixCleaned(t, redisURL)
		mod := func(c *config.Config) {
			c.DatabaseURL, c.RedisURL, c.EventLog.RedisPrefix = dbURL, redisURL, prefix
			c.Runs.DisconnectGrace = testGrace
		}
		return start(t, graceRun, mod), start(t, graceRun, mod)
	}
	t.Run("the client comes back elsewhere", func(t *testing.T) {
		t.Parallel()
		a, b := pair(t)
		head, runID, leave := startLeaving(t, a)
		leave()
		resume(t, b, runID, head)
	})
	t.Run("a reader was there already", func(t *testing.T) {
		t.Parallel()
		a, b := pair(t)
		_, runID, leave := startLeaving(t, a)
		r, _ := b.openStream(context.Background(), "GET", "/v1/runs/"+runID+"/events", "", nil)
		head := readN(t, r, 4)
		leave()
		if n := checkNative(t, append(head, readToEnd(t, r)...)); n.end.Status != agentstream.RunCompleted {
			t.Fatalf("the run ended %+v", n.end)
		}
	})
	t.Run("nobody comes back", func(t *testing.T) {
		t.Parallel()
		a, _ := pair(t)
		_, runID, leave := startLeaving(t, a)
		leave()
		cancelledAfterGrace(t, a, runID, time.Now())
	})
}
