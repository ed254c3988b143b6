package httpapi

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/httpapi/wire"
	"github.com/agentstream/agentstream/memlog"
)

// requestKey marks the request's context in TestCatchUpReadsUnderNoRequestContext.
type requestKey struct{}

// underRequestLog counts the reads made under a context derived from the
// request's (one carrying requestKey).
type underRequestLog struct {
	agentstream.EventLog
	under atomic.Int32
}

func (l *underRequestLog) Read(ctx context.Context, runID string, after int64, max int) ([]agentstream.Event, bool, error) {
	if ctx.Value(requestKey{}) != nil {
		l.under.Add(1)
	}
	return l.EventLog.Read(ctx, runID, after, max)
}

// TestCatchUpReadsUnderNoRequestContext: the events an inline stream has
// not had, which are in the log, are read and sent without a context
// under the request's (which would keep a map of children and a Done
// channel for the whole stream); events that are not there yet are
// waited for, under the request's context, for at most a heartbeat.
func TestCatchUpReadsUnderNoRequestContext(t *testing.T) {
	t.Parallel()
	log := memlog.New(memlog.Options{})
	for range 3 {
		if _, err := log.Append(t.Context(), "run_1", agentstream.NewEvent(agentstream.EventRunQueued, agentstream.RunQueuedData{Position: 1})); err != nil {
			t.Fatal(err)
		}
	}
	rlog := &underRequestLog{EventLog: log}
	s := &Server{log: rlog, opts: Options{Heartbeat: 50 * time.Millisecond}}
	ctx, cancel := context.WithCancel(context.WithValue(t.Context(), requestKey{}, true))
	defer cancel()
	rec := httptest.NewRecorder()
	st := &stream{ctx: ctx, out: &sseOut{w: rec, rc: http.NewResponseController(rec), stall: time.Second}, enc: wire.NewNative(wire.Stream{})}
	d := &direct{s: s, runID: "run_1", st: st}

	if !d.catchUp(3) || st.after != 3 {
		t.Fatalf("caught up to %d, want 3", st.after)
	}
	if n := strings.Count(rec.Body.String(), "run.queued"); n != 3 || rlog.under.Load() != 0 {
		t.Fatalf("%d events sent, %d reads under the request's context; want 3, 0", n, rlog.under.Load())
	}
	// An event not in the log: waited for a heartbeat, under the request's.
	start := time.Now()
	if d.catchUp(4) || st.after != 3 {
		t.Fatalf("caught up to %d without the event", st.after)
	}
	if el := time.Since(start); el < 50*time.Millisecond || rlog.under.Load() != 1 {
		t.Fatalf("gave up after %v, %d reads under the request's context; want a heartbeat, 1", el, rlog.under.Load())
	}
}
