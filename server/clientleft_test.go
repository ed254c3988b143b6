package server_test

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/config"
	"github.com/agentstream/agentstream/internal/testenv"
	"github.com/agentstream/agentstream/sim"
)

// logRecorder is a slog.Handler that keeps every record, at every level.
type logRecorder struct {
	mu   sync.Mutex
	recs []string
	errs int
}

func (*logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecorder) WithAttrs([]slog.Attr) slog.Handler     { return h }
func (h *logRecorder) WithGroup(string) slog.Handler          { return h }

func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Level.String() + " " + r.Message)
	r.Attrs(func(a slog.Attr) bool {
		b.WriteString(" " + a.String())
		return true
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	h.recs = append(h.recs, b.String())
	if r.Level >= slog.LevelError {
		h.errs++
	}
	return nil
}

func (h *logRecorder) lines() ([]string, int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.recs...), h.errs
}

// TestClientLeavesWhileEnqueued: clients that leave while their enqueue
// request waits for the thread's active run are logged as having left
// (debug), never as a failure: no error-level line, no 500. On
// PostgreSQL, a leave during the store call made it a 500.
func TestClientLeavesWhileEnqueued(t *testing.T) {
	t.Parallel()
	for _, store := range []string{"sqlite", "postgres"} {
		t.Run(store, func(t *testing.T) {
			t.Parallel()
			var dbURL string
			if store == "postgres" {
				_, dbURL = testenv.PostgresSchema(t)
			}
			logs := &logRecorder{}
			e := startLogged(t, sim.Options{Tokens: 400, Pace: 5 * time.Millisecond}, func(c *config.Config) {
				if dbURL != "" {
					c.DatabaseURL = dbURL
				}
			}, logs)
			th := e.newThread(`{}`)
			first, _ := e.openStream(context.Background(), "POST", "/v1/threads/"+th.ID+"/runs", `{"input": "first"}`, nil)
			head := readN(t, first, 4)

			const waiters = 20
			var wg sync.WaitGroup
			for i := range waiters {
				wg.Go(func() {
					ctx, cancel := context.WithCancel(context.Background())
					// Leave at staggered times while the request waits, so
					// some leave during the store call and some between.
					time.AfterFunc(100*time.Millisecond+time.Duration(i)*17*time.Millisecond, cancel)
					req, err := http.NewRequestWithContext(ctx, "POST", e.url+"/v1/threads/"+th.ID+"/runs",
						strings.NewReader(`{"input": "second", "multitask": "enqueue"}`))
					if err != nil {
						t.Error(err)
						return
					}
					resp, err := http.DefaultClient.Do(req)
					if err == nil {
						_ = resp.Body.Close()
						t.Errorf("an enqueued request was answered %d before the first run ended", resp.StatusCode)
					}
				})
			}
			wg.Wait()
			if n := checkNative(t, append(head, readToEnd(t, first)...)); n.end.Status != agentstream.RunCompleted {
				t.Fatalf("the first run ended %+v", n.end)
			}
			// No enqueued run was made: their clients left first.
			if msgs := e.messages(th.ID); len(msgs) != 2 {
				t.Fatalf("the thread has %d messages, want the first run's 2", len(msgs))
			}
			// Each request handler ends once its wait does (a store call,
			// or 50ms): wait, bounded, until all have logged their leaving.
			var lines []string
			var errs, left int
			for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
				lines, errs = logs.lines()
				left = 0
				for _, l := range lines {
					if strings.Contains(l, "client left") {
						left++
					}
				}
				if left >= waiters || time.Now().After(deadline) {
					break
				}
			}
			for _, l := range lines {
				if strings.Contains(l, "status=500") {
					errs++
				}
			}
			if errs != 0 || left != waiters {
				t.Fatalf("%d error lines or 500s and %d \"client left\" lines (want 0 and %d):\n%s", errs, left, waiters, strings.Join(lines, "\n"))
			}
		})
	}
}
