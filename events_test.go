package agentstream

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// deltaCases are a few texts that need escaping (internal/jsonstr tests
// the escaping itself in full).
// The long ones do not fit NewDeltaEvent's stack buffer.
var deltaCases = []string{"", " world", `say "hi"`, "<b>&\n", "é \u2028 \xff",
	strings.Repeat("long ", 30), strings.Repeat("<", 30)}

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

// TestDeltaEventSize checks that a token's data takes the heap's size
// class of its length, not one with room to spare: the event log keeps it
// for the rest of the run.
func TestDeltaEventSize(t *testing.T) {
	const id = "msg_01JDQ8Z9X4T5R6Y7U8I9O0P1A2" // NewID's length
	for _, delta := range []string{" tok", " token!", strings.Repeat("x", 40)} {
		ev := NewDeltaEvent(id, delta)
		// append's growth rounds a capacity up to the heap's size class.
		want := cap(append([]byte(nil), make([]byte, len(ev.Data))...))
		if cap(ev.Data) > want {
			t.Errorf("NewDeltaEvent(%q, %q): %d bytes of data in %d, want %d", id, delta, len(ev.Data), cap(ev.Data), want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _ = NewDeltaEvent(id, " token") }); n != 1 {
		t.Errorf("NewDeltaEvent allocates %v times, want 1", n)
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
