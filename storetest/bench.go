package storetest

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/internal/cpustat"
)

// BenchmarkRunWrites measures the store writes of one whole run as the
// runner makes them: the run and its question (CreateRun), StartRun, the
// thread's history (ListMessages), one checkpoint of a partial answer, and
// FinishRun with the complete answer. Each op is one run on a thread of
// its own; threads are made before the timer starts.
func BenchmarkRunWrites(b *testing.B, newStore func(t testing.TB) agentstream.Store) {
	st := newStore(b)
	b.Cleanup(func() { _ = st.Close() })
	ctx := b.Context()
	threads := make([]agentstream.Thread, b.N)
	for i := range threads {
		threads[i] = createThread(b, st, "user-1")
	}
	answer := "Here is an answer of about the length of a short paragraph, streamed token by token and saved at the end."
	b.ResetTimer()
	for i := range b.N {
		now := time.Now().UTC()
		run, in := newRun(threads[i], now)
		if _, err := st.CreateRun(ctx, run, in); err != nil {
			b.Fatal(err)
		}
		if err := st.StartRun(ctx, run.ID, now); err != nil {
			b.Fatal(err)
		}
		if _, err := st.ListMessages(ctx, run.ThreadID); err != nil {
			b.Fatal(err)
		}
		msg := assistant(run, answer[:40], agentstream.MessagePartial, now)
		if err := st.CheckpointRun(ctx, run.ID, []agentstream.Message{msg}); err != nil {
			b.Fatal(err)
		}
		msg.Content, msg.Status = answer, agentstream.MessageComplete
		done := finished(run, agentstream.RunCompleted, nil, agentstream.Usage{InputTokens: 20, OutputTokens: 24}, now)
		if err := st.FinishRun(ctx, done, []agentstream.Message{msg}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/run")
}

// BenchmarkListMessages measures the read of a thread's messages a run
// makes before its model call, for a thread of 2 messages (a run's
// question and answer) and of 40 (twenty turns).
func BenchmarkListMessages(b *testing.B, newStore func(t testing.TB) agentstream.Store) {
	st := newStore(b)
	b.Cleanup(func() { _ = st.Close() })
	ctx := b.Context()
	for _, turns := range []int{1, 20} {
		th := createThread(b, st, "user-1")
		answer := "Here is an answer of about the length of a short paragraph, streamed token by token and saved at the end."
		for range turns {
			now := time.Now().UTC()
			run, in := newRun(th, now)
			if _, err := st.CreateRun(ctx, run, in); err != nil {
				b.Fatal(err)
			}
			if err := st.StartRun(ctx, run.ID, now); err != nil {
				b.Fatal(err)
			}
			done := finished(run, agentstream.RunCompleted, nil, agentstream.Usage{}, now)
			if err := st.FinishRun(ctx, done, []agentstream.Message{assistant(run, answer, agentstream.MessageComplete, now)}); err != nil {
				b.Fatal(err)
			}
		}
		b.Run(fmt.Sprintf("messages=%d", 2*turns), func(b *testing.B) {
			for b.Loop() {
				msgs, err := st.ListMessages(ctx, th.ID)
				if err != nil || len(msgs) != 2*turns {
					b.Fatalf("%d messages, %v; want %d", len(msgs), err, 2*turns)
				}
			}
		})
	}
}

// BenchmarkCheckpoints measures the checkpoints of one long answer, as a
// runner saves it while it streams: 10,000 tokens (about 60 KB of text,
// some of it multi-byte), checkpointed every 100 tokens, then saved whole
// by FinishRun. save=whole checkpoints with CheckpointRun and the whole
// text so far (how runners saved before CheckpointText); save=append with
// CheckpointText and only the text since the last checkpoint. Each op is
// one answer, on a run of its own made before the timer starts. Reported
// per checkpoint, for the first ten (early-) and the last ten (late-):
// wall time, the process's CPU time (getrusage; the store's own when it
// runs in the process, as SQLite does), and the bytes the store wrote, as
// written counts them (nil: not reported). A checkpoint whose cost does
// not grow with the answer has its late figures near its early ones.
func BenchmarkCheckpoints(b *testing.B, newStore func(t testing.TB) agentstream.Store, written func(t testing.TB) int64) {
	const tokens, every = 10000, 100
	// The words are random letters, none repeated in a pattern, so that a
	// store's compression (PostgreSQL's TOAST) does not hide what the text
	// weighs; one in 16 starts with a two-byte letter.
	rng := rand.New(rand.NewPCG(1, 2))
	words := make([]string, tokens)
	for i := range words {
		w := make([]rune, 3+rng.IntN(5))
		for j := range w {
			w[j] = 'a' + rng.Int32N(26)
		}
		if i%16 == 0 {
			w[0] = 'é'
		}
		words[i] = string(w) + " "
	}
	for _, mode := range []string{"whole", "append"} {
		b.Run("save="+mode, func(b *testing.B) {
			st := newStore(b)
			b.Cleanup(func() { _ = st.Close() })
			ctx := b.Context()
			runs := make([]agentstream.Run, b.N)
			for i := range runs {
				th := createThread(b, st, "user-1")
				now := time.Now().UTC()
				run, in := newRun(th, now)
				run.Status, run.StartedAt = agentstream.RunRunning, &now
				if _, err := st.CreateRun(ctx, run, in); err != nil {
					b.Fatal(err)
				}
				runs[i] = run
			}
			type phase struct {
				wall, cpu time.Duration
				bytes, n  int64
			}
			var early, late phase
			cpuOK := true
			b.ResetTimer()
			for i := range b.N {
				run := runs[i]
				msg := assistant(run, "", agentstream.MessagePartial, time.Now().UTC())
				var text strings.Builder
				saved := 0
				for k := 1; k <= tokens/every; k++ {
					for t := range every {
						text.WriteString(words[(k-1)*every+t])
					}
					var w0 int64
					if written != nil {
						w0 = written(b)
					}
					c0, ok0 := cpustat.Process()
					t0 := time.Now()
					m := msg
					var err error
					if mode == "whole" {
						m.Content = text.String()
						err = st.CheckpointRun(ctx, run.ID, []agentstream.Message{m})
					} else {
						m.Content = text.String()[saved:]
						err = st.CheckpointText(ctx, run.ID, m, int64(saved))
						saved = text.Len()
					}
					wall := time.Since(t0)
					c1, ok1 := cpustat.Process()
					if err != nil {
						b.Fatal(err)
					}
					var p *phase
					switch {
					case k <= 10:
						p = &early
					case k > tokens/every-10:
						p = &late
					default:
						continue
					}
					p.wall += wall
					p.cpu += c1 - c0
					cpuOK = cpuOK && ok0 && ok1
					if written != nil {
						p.bytes += written(b) - w0
					}
					p.n++
				}
				msg.Content, msg.Status = text.String(), agentstream.MessageComplete
				done := finished(run, agentstream.RunCompleted, nil, agentstream.Usage{OutputTokens: tokens}, time.Now().UTC())
				if err := st.FinishRun(ctx, done, []agentstream.Message{msg}); err != nil {
					b.Fatal(err)
				}
				if i == 0 {
					// What was saved reads back whole.
					msgs, err := st.ListMessages(ctx, run.ThreadID)
					if err != nil || len(msgs) != 2 || msgs[1].Content != text.String() {
						b.Fatalf("the answer read back: %d messages, %v", len(msgs), err)
					}
				}
			}
			b.StopTimer()
			for _, p := range []struct {
				name string
				ph   phase
			}{{"early", early}, {"late", late}} {
				n := float64(p.ph.n)
				b.ReportMetric(float64(p.ph.wall.Microseconds())/n, p.name+"-µs/ckpt")
				if cpuOK {
					b.ReportMetric(float64(p.ph.cpu.Microseconds())/n, p.name+"-cpu-µs/ckpt")
				}
				if written != nil {
					b.ReportMetric(float64(p.ph.bytes)/n, p.name+"-B/ckpt")
				}
			}
		})
	}
}
