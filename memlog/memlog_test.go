package memlog

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/logtest"
)

func TestConformance(t *testing.T) {
	logtest.Run(t, func(testing.TB) agentstream.EventLog { return New(Options{}) })
}

func TestRetentionEvicts(t *testing.T) {
	t.Parallel()
	l := New(Options{Retention: 20 * time.Millisecond})
	ctx := context.Background()
	ev := agentstream.NewEvent(agentstream.EventRunCompleted, agentstream.RunEndData{RunID: "r", Status: agentstream.RunCompleted})
	if _, err := l.Append(ctx, "r", ev); err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.Read(ctx, "r", 0, 10); err != nil {
		t.Fatalf("read within retention: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for l.Len() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("log not evicted after its retention")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, _, err := l.Read(ctx, "r", 0, 10); !errors.Is(err, agentstream.ErrNotFound) {
		t.Fatalf("read after eviction: %v, want ErrNotFound", err)
	}
}

func BenchmarkAppend(b *testing.B) {
	l := New(Options{})
	ev := agentstream.NewEvent(agentstream.EventMessageDelta, agentstream.MessageDeltaData{MessageID: "msg_1", Delta: "token "})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := l.Append(ctx, "run", ev); err != nil {
			b.Fatal(err)
		}
	}
}
