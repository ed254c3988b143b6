package agentstream

import (
	"bytes"
	"encoding/json"
	"testing"
)

// deltaCases are a few texts that need escaping (internal/jsonstr tests
// the escaping itself in full).
var deltaCases = []string{"", " world", `say "hi"`, "<b>&\n", "é \u2028 \xff"}

func TestDeltaEvent(t *testing.T) {
	t.Parallel()
	for _, delta := range deltaCases {
		for _, id := range []string{"msg_01", "", "m\"<id>"} {
			want := NewEvent(EventMessageDelta, MessageDeltaData{MessageID: id, Delta: delta})
			got := NewDeltaEvent(id, delta)
			if got.Type != want.Type || !bytes.Equal(got.Data, want.Data) {
				t.Errorf("NewDeltaEvent(%q, %q) = %s %s, want %s %s", id, delta, got.Type, got.Data, want.Type, want.Data)
			}
		}
	}
}

func FuzzDeltaEvent(f *testing.F) {
	for _, d := range deltaCases {
		f.Add("msg_1", d)
	}
	f.Fuzz(func(t *testing.T, id, delta string) {
		want, err := json.Marshal(MessageDeltaData{MessageID: id, Delta: delta})
		if err != nil {
			t.Fatal(err)
		}
		if got := NewDeltaEvent(id, delta).Data; !bytes.Equal(got, want) {
			t.Fatalf("NewDeltaEvent(%q, %q) = %s, want %s", id, delta, got, want)
		}
	})
}

// BenchmarkDeltaEvent compares the hand encoding of the per-token event
// with encoding/json's.
func BenchmarkDeltaEvent(b *testing.B) {
	const id, delta = "msg_01JDQ8Z9X4T5R6Y7U8I9O0P1A2", " token"
	b.Run("NewDeltaEvent", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = NewDeltaEvent(id, delta)
		}
	})
	b.Run("NewEvent", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = NewEvent(EventMessageDelta, MessageDeltaData{MessageID: id, Delta: delta})
		}
	})
}
