package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
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
