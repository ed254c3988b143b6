package storetest

import (
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
