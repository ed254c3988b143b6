package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/internal/cpustat"
)

// benchStore opens a store in a temporary directory and returns it with
// its database file's path.
func benchStore(b *testing.B) (*Store, string) {
	b.Helper()
	path := filepath.Join(b.TempDir(), "bench.db")
	s, err := Open(b.Context(), path)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	return s, path
}

// setAutocheckpoint sets the write connection's wal_autocheckpoint (pages;
// 0: never).
func setAutocheckpoint(b *testing.B, s *Store, pages int) {
	b.Helper()
	if _, err := s.w.ExecContext(b.Context(), fmt.Sprintf("PRAGMA wal_autocheckpoint = %d", pages)); err != nil {
		b.Fatal(err)
	}
}

// walFrames is how many frames the WAL file at path holds: its size past
// the header over a frame's (a page and its 24-byte header).
func walFrames(b *testing.B, s *Store, path string) int64 {
	b.Helper()
	var pageSize int64
	if err := s.w.QueryRowContext(b.Context(), "PRAGMA page_size").Scan(&pageSize); err != nil {
		b.Fatal(err)
	}
	fi, err := os.Stat(path + "-wal")
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		b.Fatal(err)
	}
	return max(0, fi.Size()-32) / (pageSize + 24)
}

// runWrites is what a runner writes for one run of 20 tokens: the run
// (with a new thread, or on th) and its end with the answer.
type runWrites struct {
	s      *Store
	answer string
}

func (w runWrites) run(ctx context.Context, tb testing.TB, th *agentstream.Thread) {
	tb.Helper()
	now := time.Now().UTC()
	newThread := th == nil
	if newThread {
		th = &agentstream.Thread{ID: agentstream.NewID("thr_"), UserID: "u1", Agent: "assistant", CreatedAt: now, UpdatedAt: now}
	}
	run := agentstream.Run{ID: agentstream.NewID("run_"), ThreadID: th.ID, UserID: th.UserID, Agent: "assistant",
		Status: agentstream.RunRunning, CreatedAt: now, StartedAt: &now, Owner: "bench", LeaseUntil: &now}
	input := agentstream.Message{ID: agentstream.NewID("msg_"), Role: agentstream.RoleUser, Content: "hello",
		Status: agentstream.MessageComplete, CreatedAt: now}
	var err error
	if newThread {
		_, err = w.s.CreateThreadRun(ctx, *th, run, agentstream.RunLimits{}, input)
	} else {
		_, err = w.s.CreateRunLimited(ctx, run, agentstream.RunLimits{}, input)
	}
	if err != nil {
		tb.Fatalf("create: %v", err)
	}
	run.Status, run.FinishedAt, run.EndSeq = agentstream.RunCompleted, &now, 23
	run.Usage = agentstream.Usage{InputTokens: 20, OutputTokens: 20}
	answer := agentstream.Message{ID: agentstream.NewID("msg_"), Role: agentstream.RoleAssistant, Content: w.answer,
		Status: agentstream.MessageComplete, CreatedAt: now}
	if err := w.s.FinishRun(ctx, run, []agentstream.Message{answer}); err != nil {
		tb.Fatalf("FinishRun: %v", err)
	}
}

// BenchmarkRunPages makes the store writes of short runs one after the
// other, as BenchmarkRunCost (agent/) makes them through a runner: a new
// thread with its run (CreateThreadRun) or a run on a thread of 300 to 340
// messages (CreateRunLimited), then FinishRun with a 20-token answer. It
// reports the process's CPU per run (cpu-ns/run) and, with
// wal_autocheckpoint off (wal=kept, where the WAL only grows), the WAL
// frames (pages) written per run. wal=store keeps the store's own
// auto-checkpoint, so its CPU includes the checkpoints' share.
func BenchmarkRunPages(b *testing.B) {
	var sb strings.Builder
	for i := range 20 {
		fmt.Fprintf(&sb, "tok%02d ", i)
	}
	for _, long := range []bool{false, true} {
		for _, wal := range []string{"kept", "store"} {
			name := "new-thread"
			if long {
				name = "long-thread"
			}
			b.Run(name+"/wal="+wal, func(b *testing.B) {
				s, path := benchStore(b)
				if wal == "kept" {
					setAutocheckpoint(b, s, 0)
				}
				benchRuns(b, runWrites{s: s, answer: sb.String()}, long, func() int64 { return walFrames(b, s, path) }, wal == "kept")
			})
		}
	}
}

// benchRuns times b.N runs of w; frames, when pages is set, is read before
// and after to report the WAL pages per run.
func benchRuns(b *testing.B, w runWrites, long bool, frames func() int64, pages bool) {
	ctx := context.Background()
	const runsPerThread = 20
	var threads []*agentstream.Thread
	if long {
		for range b.N/runsPerThread + 1 {
			threads = append(threads, longThread(b, w.s))
		}
	} else {
		w.run(ctx, b, nil) // statements prepared
	}
	runtime.GC()
	var f0 int64
	if pages {
		f0 = frames()
	}
	c0 := cpustat.Of(b)
	b.ResetTimer()
	for i := range b.N {
		var th *agentstream.Thread
		if long {
			th = threads[i/runsPerThread]
		}
		w.run(ctx, b, th)
	}
	b.StopTimer()
	b.ReportMetric(float64((cpustat.Of(b)-c0).Nanoseconds())/float64(b.N), "cpu-ns/run")
	if pages {
		b.ReportMetric(float64(frames()-f0)/float64(b.N), "pages/run")
	}
}

// longThread makes a thread of 300 messages.
func longThread(b *testing.B, s *Store) *agentstream.Thread {
	b.Helper()
	ctx := b.Context()
	now := time.Now().UTC()
	th := agentstream.Thread{ID: agentstream.NewID("thr_"), UserID: "u1", Agent: "assistant", CreatedAt: now, UpdatedAt: now}
	if err := s.CreateThread(ctx, th); err != nil {
		b.Fatal(err)
	}
	run := agentstream.Run{ID: agentstream.NewID("run_"), ThreadID: th.ID, UserID: th.UserID, Agent: "assistant",
		Status: agentstream.RunRunning, CreatedAt: now, StartedAt: &now}
	var hist []agentstream.Message
	for i := range 299 {
		role := agentstream.RoleUser
		if i%2 == 1 {
			role = agentstream.RoleAssistant
		}
		hist = append(hist, agentstream.Message{ID: agentstream.NewID("msg_"), Role: role,
			Content: fmt.Sprintf("message %d of a long conversation", i), Status: agentstream.MessageComplete, CreatedAt: now})
	}
	input := agentstream.Message{ID: agentstream.NewID("msg_"), Role: agentstream.RoleUser, Content: "and?",
		Status: agentstream.MessageComplete, CreatedAt: now}
	if _, err := s.CreateRun(ctx, run, input, hist...); err != nil {
		b.Fatal(err)
	}
	run.Status, run.FinishedAt = agentstream.RunCompleted, &now
	if err := s.FinishRun(ctx, run, nil); err != nil {
		b.Fatal(err)
	}
	return &th
}

// BenchmarkAutocheckpoint makes the runs of BenchmarkRunPages (new
// threads) with wal_autocheckpoint at several sizes (pages), to weigh a
// larger WAL against the checkpoints it saves: cpu-ns/run, and the WAL
// file's size at the end (wal-bytes; SQLite reuses the file from its
// start after a checkpoint, so its size is the most it held). read-ns is
// the process's CPU per read of a 40-message thread (ListMessages) made
// while the WAL is at its fullest: a reader looks each page up in the WAL
// first.
func BenchmarkAutocheckpoint(b *testing.B) {
	var sb strings.Builder
	for i := range 20 {
		fmt.Fprintf(&sb, "tok%02d ", i)
	}
	for _, pages := range []int{1000, 4000, 16000} {
		b.Run(fmt.Sprintf("pages=%d", pages), func(b *testing.B) {
			s, path := benchStore(b)
			setAutocheckpoint(b, s, pages)
			w := runWrites{s: s, answer: sb.String()}
			ctx := context.Background()
			th := longThread(b, s)
			for range 19 {
				w.run(ctx, b, th)
			}
			benchRuns(b, w, false, nil, false)
			fi, err := os.Stat(path + "-wal")
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(fi.Size()), "wal-bytes")
			// Reads with the WAL at its fullest: runs up to the next
			// checkpoint, without one.
			setAutocheckpoint(b, s, 0)
			for walFrames(b, s, path) < int64(pages) {
				w.run(ctx, b, nil)
			}
			const reads = 2000
			c0 := cpustat.Of(b)
			for range reads {
				if _, err := s.ListMessages(ctx, th.ID); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64((cpustat.Of(b)-c0).Nanoseconds())/reads, "read-ns")
		})
	}
}

// BenchmarkEndRunStatement times the statement that ends a run, alone, in
// one transaction rolled back at the end (no commit): as FinishRun wrote
// it (returning: UPDATE … RETURNING thread_id) and as two statements
// (exec: the UPDATE, then the thread by a SELECT on the primary key), to
// see whether RETURNING's temporary table costs much: it did not
// (BENCHMARKS.md).
// cpu-ns/update is the process's CPU per run ended, among b.N running
// runs and 500 finished ones.
func BenchmarkEndRunStatement(b *testing.B) {
	const update = `UPDATE runs SET status = ?, error_code = ?, error_message = ?,
			input_tokens = ?, output_tokens = ?, finished_at = ?,
			owner = '', lease_until = NULL, end_seq = ?
		WHERE id = ? AND status IN ('queued', 'running')`
	for _, v := range []string{"returning", "exec"} {
		b.Run(v, func(b *testing.B) {
			s, _ := benchStore(b)
			ctx := context.Background()
			w := runWrites{s: s, answer: "an answer"}
			for range 500 {
				w.run(ctx, b, nil)
			}
			ids := make([]string, b.N)
			for i := range ids {
				now := time.Now().UTC()
				th := agentstream.Thread{ID: agentstream.NewID("thr_"), UserID: "u1", Agent: "a", CreatedAt: now, UpdatedAt: now}
				run := agentstream.Run{ID: agentstream.NewID("run_"), ThreadID: th.ID, UserID: th.UserID, Agent: "a",
					Status: agentstream.RunRunning, CreatedAt: now, StartedAt: &now, Owner: "o", LeaseUntil: &now}
				in := agentstream.Message{ID: agentstream.NewID("msg_"), Role: agentstream.RoleUser, Content: "hi",
					Status: agentstream.MessageComplete, CreatedAt: now}
				if _, err := s.CreateThreadRun(ctx, th, run, agentstream.RunLimits{}, in); err != nil {
					b.Fatal(err)
				}
				ids[i] = run.ID
			}
			tx, err := s.w.BeginTx(ctx, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer func() { _ = tx.Rollback() }() // nothing is to be kept
			q := update
			if v == "returning" {
				q += " RETURNING thread_id"
			}
			upd, err := tx.PrepareContext(ctx, q)
			if err != nil {
				b.Fatal(err)
			}
			sel, err := tx.PrepareContext(ctx, `SELECT thread_id FROM runs WHERE id = ?`)
			if err != nil {
				b.Fatal(err)
			}
			runtime.GC()
			c0 := cpustat.Of(b)
			b.ResetTimer()
			for i := range b.N {
				args := []any{"completed", nil, nil, 20, 20, time.Now().UnixMicro(), 23, ids[i]}
				var th string
				if v == "returning" {
					err = upd.QueryRowContext(ctx, args...).Scan(&th)
				} else {
					var res sql.Result
					if res, err = upd.ExecContext(ctx, args...); err == nil {
						if n, _ := res.RowsAffected(); n != 1 {
							b.Fatalf("%d runs ended", n)
						}
						err = sel.QueryRowContext(ctx, ids[i]).Scan(&th)
					}
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64((cpustat.Of(b)-c0).Nanoseconds())/float64(b.N), "cpu-ns/update")
		})
	}
}
