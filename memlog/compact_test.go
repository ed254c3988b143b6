package memlog

import (
	"bytes"
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/agentstream/agentstream"
)

// raw is an event of type t with data d, as another producer may write it.
func raw(t agentstream.EventType, d string) agentstream.Event {
	return agentstream.Event{Type: t, Data: json.RawMessage(d)}
}

func clone(evs []agentstream.Event) []agentstream.Event {
	out := make([]agentstream.Event, len(evs))
	for i, ev := range evs {
		out[i] = agentstream.Event{Seq: ev.Seq, Type: ev.Type, Data: bytes.Clone(ev.Data)}
	}
	return out
}

// compacted counts r's compact entries. r.mu is held.
func compacted(r *runLog) int {
	n := 0
	for j := r.off; j < r.off+r.n; j++ {
		if _, e := r.entry(j); e.pre >= 0 {
			n++
		}
	}
	return n
}

// checkReadBack reads id's retained events after `after` in batches of
// each size and checks each is the one appended under its Seq, byte for
// byte.
func checkReadBack(t testing.TB, l *Log, id string, after int64, want map[int64]agentstream.Event) {
	t.Helper()
	b, err := l.Bounds(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	for _, batch := range []int{1, 3, segEvents + 1, 1 << 20} {
		for pos := max(after, b.First-1); pos < b.Last; {
			evs, _, err := l.Read(ctx, id, pos, batch)
			if err != nil || len(evs) == 0 {
				t.Fatalf("batches of %d: read after %d: %d events, %v", batch, pos, len(evs), err)
			}
			for _, ev := range evs {
				w := want[ev.Seq]
				if ev.Seq != pos+1 || ev.Type != w.Type || !bytes.Equal(ev.Data, w.Data) || (ev.Data == nil) != (w.Data == nil) {
					t.Fatalf("batches of %d: after %d read %d %s %q, want %d %s %q", batch, pos, ev.Seq, ev.Type, ev.Data, pos+1, w.Type, w.Data)
				}
				pos = ev.Seq
			}
		}
	}
}

func TestCompactRoundTrip(t *testing.T) {
	t.Parallel()
	d := agentstream.NewDeltaEvent
	const pre = `{"message_id":"msg_1","delta":"`
	long := strings.Repeat("long text, ", 100)
	tests := []struct {
		name string
		evs  []agentstream.Event
		// compact is how many of evs the log keeps compact.
		compact int
	}{
		{"one message", []agentstream.Event{d("msg_1", "Hello"), d("msg_1", ","), d("msg_1", " world")}, 3},
		{"escapes", []agentstream.Event{d("msg_1", `"quoted" \ back\slash`), d("msg_1", "line\nbreak\ttab\r\x00\x1f"), d("msg_1", "<b>&amp;</b>"), d("msg_1", "\u2028\u2029"), d("msg_1", "bad \xff utf-8")}, 5},
		{"unicode", []agentstream.Event{d("msg_1", "héllo"), d("msg_1", "日本語"), d("msg_1", "🙂👍🏽")}, 3},
		{"empty delta", []agentstream.Event{d("msg_1", ""), d("msg_1", "x"), d("msg_1", "")}, 3},
		{"long deltas", []agentstream.Event{d("msg_1", long), d("msg_1", strings.Repeat("é", 70000)), d("msg_1", "short")}, 3},
		{"ids with escapes", []agentstream.Event{d(`m"1`, "a"), d(`m\1`, "b"), d("", "c"), d(`m"1`, "d")}, 4},
		{"several messages", []agentstream.Event{
			d("msg_1", "a"), d("msg_1", "b"),
			agentstream.NewEvent(agentstream.EventStepStarted, agentstream.StepStartedData{Step: 2, MessageID: "msg_2"}),
			d("msg_2", "c"), d("msg_3", "d"), d("msg_2", "e"), d("msg_3", "f"), d("msg_1", "g"),
		}, 7},
		{"as encoding/json writes them", []agentstream.Event{
			agentstream.NewEvent(agentstream.EventMessageDelta, agentstream.MessageDeltaData{MessageID: "msg_1", Delta: "<a> & \"b\""}),
			d("msg_1", "c"),
		}, 2},
		{"other shapes", []agentstream.Event{
			raw(agentstream.EventMessageDelta, `{"delta":"x","message_id":"msg_1"}`),
			raw(agentstream.EventMessageDelta, `{"message_id": "msg_1", "delta": "x"}`),
			raw(agentstream.EventMessageDelta, `{"message_id":"msg_1","delta":"x","index":1}`),
			raw(agentstream.EventMessageDelta, `{"message_id":"msg_1","delta":"x"} `),
			raw(agentstream.EventMessageDelta, `{"message_id":"msg_1","delta":"`),
			raw(agentstream.EventMessageDelta, `{"message_id":"msg_1","delta":"}`),
			raw(agentstream.EventMessageDelta, `{"message_id":"msg_1","delta":null}`),
			raw(agentstream.EventMessageDelta, `{"message_id":"msg_1`),
			raw(agentstream.EventMessageDelta, `{"message_id":"msg_1\`),
			raw(agentstream.EventMessageDelta, `{"message_id":`),
			raw(agentstream.EventMessageDelta, ``),
			{Type: agentstream.EventMessageDelta},
			raw(agentstream.EventToolArgumentsDelta, pre+`x"}`),
			raw("message.delta.v2", pre+`x"}`),
		}, 0},
		{"other shapes between deltas", []agentstream.Event{
			d("msg_1", "a"),
			raw(agentstream.EventMessageDelta, `{"message_id":"msg_1","delta":"x","index":1}`),
			d("msg_1", "b"),
			raw(agentstream.EventToolArgumentsDelta, pre+`x"}`),
			d("msg_1", "c"),
		}, 3},
		{"rebuilt exactly whatever the text holds", []agentstream.Event{
			d("msg_1", "a"),
			raw(agentstream.EventMessageDelta, pre+`x","index":"1"}`),
			raw(agentstream.EventMessageDelta, pre+`"}`),
			raw(agentstream.EventMessageDelta, pre+`\"}`),
		}, 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := New(Options{})
			const id = "run"
			appended := clone(tc.evs)
			want := map[int64]agentstream.Event{}
			for i, ev := range tc.evs {
				want[int64(i+1)] = ev
			}
			// One event an Append, and the same again in one Append.
			for _, ev := range tc.evs {
				mustAppend(t, l, id, ev)
			}
			mustAppend(t, l, "batch", tc.evs...)
			for i, ev := range tc.evs {
				if ev.Seq != 0 || ev.Type != appended[i].Type || !bytes.Equal(ev.Data, appended[i].Data) {
					t.Fatalf("Append changed the caller's event %d: %d %s %q", i, ev.Seq, ev.Type, ev.Data)
				}
			}
			r := l.get(id)
			r.mu.Lock()
			n := compacted(r)
			r.mu.Unlock()
			if n != tc.compact {
				t.Errorf("%d of %d events kept compact, want %d", n, len(tc.evs), tc.compact)
			}
			checkReadBack(t, l, id, 0, want)
			checkReadBack(t, l, "batch", 0, want)
			end := ended(id)
			want[int64(len(tc.evs)+1)] = end
			mustAppend(t, l, id, end)
			checkReadBack(t, l, id, 0, want)
			checkLog(t, l)
		})
	}
}

// TestCompactTrim: a run's log trimmed under its cap, then finished,
// reads back what was appended, its compact deltas and the events kept
// as they are alike, and lets the dropped ones go.
func TestCompactTrim(t *testing.T) {
	t.Parallel()
	for _, limit := range []int64{200, 1 << 10, 8 << 10} {
		t.Run(fmt.Sprint(limit), func(t *testing.T) {
			t.Parallel()
			l := New(Options{MaxRunBytes: limit})
			const id = "run"
			want := map[int64]agentstream.Event{}
			var seq int64
			for i := range 500 {
				ev := agentstream.NewDeltaEvent(fmt.Sprint("msg_", i/50), strings.Repeat("é", i%23))
				if i%17 == 0 {
					ev = agentstream.NewEvent(agentstream.EventStepStarted, agentstream.StepStartedData{Step: i, MessageID: "msg_x"})
				}
				seq = mustAppend(t, l, id, ev)
				want[seq] = ev
				if i%37 == 0 {
					checkReadBack(t, l, id, 0, want)
					checkLog(t, l)
				}
			}
			r := l.get(id)
			r.mu.Lock()
			n, first := compacted(r), r.first
			r.mu.Unlock()
			if n == 0 || first == 1 {
				t.Fatalf("from %d on, %d events kept compact", first, n)
			}
			// What a reader read last is let go with the events dropped.
			if _, _, err := l.Read(ctx, id, seq-1, 1); err != nil {
				t.Fatal(err)
			}
			ev := agentstream.NewDeltaEvent("msg_x", strings.Repeat("x", int(limit)))
			seq = mustAppend(t, l, id, ev)
			want[seq] = ev
			r.mu.Lock()
			recent := len(r.recent)
			r.mu.Unlock()
			if recent != 0 {
				t.Errorf("%d events read last are held once dropped", recent)
			}
			end := ended(id)
			want[seq+1] = end
			mustAppend(t, l, id, end)
			checkReadBack(t, l, id, 0, want)
			checkLog(t, l)
		})
	}
}

// TestCompactFinished: finished logs with compact deltas are held under
// MaxFinishedBytes and read back whole until evicted.
func TestCompactFinished(t *testing.T) {
	t.Parallel()
	const runs, deltas = 20, 70
	var size int64
	events := make([]agentstream.Event, 0, deltas+1)
	for i := range deltas {
		events = append(events, agentstream.NewDeltaEvent("msg_1", fmt.Sprint("token ", i)))
	}
	events = append(events, ended("run"))
	want := map[int64]agentstream.Event{}
	for i, ev := range events {
		size += ev.Size()
		want[int64(i+1)] = ev
	}
	l := New(Options{MaxFinishedBytes: 5 * size})
	for i := range runs {
		id := fmt.Sprint("run_", i)
		for _, ev := range events {
			mustAppend(t, l, id, ev)
		}
		checkReadBack(t, l, id, 0, want)
		checkLog(t, l)
	}
	if n, b := l.Stats(); n != 5 || b != 5*size {
		t.Fatalf("%d runs of %d bytes held, want 5 of %d", n, b, 5*size)
	}
	for i := runs - 5; i < runs; i++ {
		checkReadBack(t, l, fmt.Sprint("run_", i), 0, want)
	}
}

// TestReadShares: readers share what they can. Events kept as appended,
// read within a segment, are the log's own; the newest deltas a reader
// built are shared with the next reader that asks for them, until the
// run ends.
func TestReadShares(t *testing.T) {
	l := New(Options{})
	const id = "run"
	full := []agentstream.Event{
		agentstream.NewEvent(agentstream.EventRunStarted, agentstream.RunStartedData{RunID: id}),
		agentstream.NewEvent(agentstream.EventStepStarted, agentstream.StepStartedData{Step: 1, MessageID: "msg_1"}),
	}
	mustAppend(t, l, id, full...)
	mustAppend(t, l, id, agentstream.NewDeltaEvent("msg_1", "a"))
	if n := testing.AllocsPerRun(100, func() {
		if evs, _, err := l.Read(ctx, id, 0, 2); err != nil || len(evs) != 2 {
			t.Fatalf("read %d events, %v", len(evs), err)
		}
	}); n != 0 {
		t.Errorf("a read of events kept as appended allocates %v times", n)
	}
	mustAppend(t, l, id, agentstream.NewDeltaEvent("msg_1", "b"))
	first, _, err := l.Read(ctx, id, 2, 10)
	if err != nil || len(first) != 2 {
		t.Fatalf("read %d events, %v", len(first), err)
	}
	var again []agentstream.Event
	if n := testing.AllocsPerRun(100, func() {
		if again, _, err = l.Read(ctx, id, 3, 10); err != nil || len(again) != 1 {
			t.Fatalf("read %d events, %v", len(again), err)
		}
	}); n != 0 || &again[0] != &first[1] {
		t.Errorf("the newest delta read again: %v allocations, shared %t", n, &again[0] == &first[1])
	}
	// A reader catching up, in a big batch, is alone.
	for i := range 2 * segEvents {
		mustAppend(t, l, id, agentstream.NewDeltaEvent("msg_1", fmt.Sprint(i)))
	}
	if evs, _, err := l.Read(ctx, id, 0, 1000); err != nil || len(evs) != 4+2*segEvents {
		t.Fatalf("read %d events, %v", len(evs), err)
	}
	r := l.get(id)
	r.mu.Lock()
	recent := len(r.recent)
	r.mu.Unlock()
	if recent > segEvents {
		t.Errorf("a read of %d events is held for the next reader", recent)
	}
	mustAppend(t, l, id, ended(id))
	r.mu.Lock()
	recent = len(r.recent)
	r.mu.Unlock()
	if recent != 0 {
		t.Errorf("a finished run holds %d events read last", recent)
	}
}

// TestCompactMemory: a streamed token's message.delta, appended as a run
// appends it, keeps a fraction of the bytes of the event appended.
func TestCompactMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("measures the heap")
	}
	const n = 100_000
	base := heapInuse()
	l := New(Options{MaxRunBytes: 1 << 30, MaxTotalBytes: 1 << 30})
	for i := range n {
		mustAppend(t, l, "run", agentstream.NewDeltaEvent("msg_01JE5GQ8ZK3V7XN2M4P6R8T0WY", fmt.Sprint(" tok", i%10)))
	}
	per := float64(int64(heapInuse())-int64(base)) / n
	t.Logf("%d deltas of 5 bytes: %.1f bytes each", n, per)
	// As appended, each is 48 bytes in a segment and 64 of data.
	if per > 32 {
		t.Errorf("a delta of 5 bytes keeps %.1f bytes", per)
	}
	runtime.KeepAlive(l)
}

// FuzzCompactDelta: any sequence of events appended, under any run cap,
// reads back byte for byte as appended, and the log's books add up.
// Each line of script is an event: its first byte picks how it is made
// from the rest.
func FuzzCompactDelta(f *testing.F) {
	f.Add([]byte("0Hello\n0 world\n1x\n2{\"message_id\":\"msg_a\",\"delta\":\"x\"}\n3\\\"}\n4y\n5\n0z"), uint16(0))
	f.Add([]byte("0a\n0b\n1c\n0d\n6e\n2\n3\"}\n0\xff\n1\u2028"), uint16(300))
	f.Add([]byte("0"+strings.Repeat("0abc\n", 80)), uint16(1000))
	f.Fuzz(func(t *testing.T, script []byte, limit uint16) {
		l := New(Options{MaxRunBytes: int64(limit)})
		const id = "run"
		want := map[int64]agentstream.Event{}
		var evs []agentstream.Event
		for _, line := range bytes.Split(script, []byte("\n")) {
			if len(line) == 0 {
				continue
			}
			s := string(line[1:])
			var ev agentstream.Event
			switch line[0] % 7 {
			case 0:
				ev = agentstream.NewDeltaEvent("msg_a", s)
			case 1:
				ev = agentstream.NewDeltaEvent("msg_"+s, s)
			case 2:
				ev = raw(agentstream.EventMessageDelta, s)
			case 3:
				ev = raw(agentstream.EventMessageDelta, `{"message_id":"msg_a","delta":"`+s)
			case 4:
				ev = raw(agentstream.EventToolArgumentsDelta, `{"message_id":"msg_a","delta":"`+s+`"}`)
			case 5:
				ev = agentstream.NewEvent(agentstream.EventStepStarted, agentstream.StepStartedData{MessageID: s})
			case 6:
				evs = append(evs, ev) // appended with the next
				continue
			}
			evs = append(evs, ev)
			appended := clone(evs)
			seq := mustAppend(t, l, id, evs...)
			for i, ev := range evs {
				if !bytes.Equal(ev.Data, appended[i].Data) {
					t.Fatalf("Append changed the caller's event %d", i)
				}
				want[seq-int64(len(evs)-1-i)] = appended[i]
			}
			evs = evs[:0]
		}
		if len(want) == 0 {
			return
		}
		checkReadBack(t, l, id, 0, want)
		checkLog(t, l)
		end := ended(id)
		want[int64(len(want)+1)] = end
		mustAppend(t, l, id, end)
		checkReadBack(t, l, id, 0, want)
		checkLog(t, l)
	})
}

// TestTextRoom: a segment takes room for about as much text as the one
// before it took, but a long delta there does not make room for more.
func TestTextRoom(t *testing.T) {
	t.Parallel()
	l := New(Options{})
	const id = "run"
	for i := range segEvents {
		text := "token"
		if i == segEvents-1 {
			text = strings.Repeat("x", 64<<10)
		}
		mustAppend(t, l, id, agentstream.NewDeltaEvent("msg_1", text))
	}
	mustAppend(t, l, id, agentstream.NewDeltaEvent("msg_1", "token"))
	r := l.get(id)
	r.mu.Lock()
	defer r.mu.Unlock()
	if c := cap(r.segs[1].text); c > segEvents*32 {
		t.Errorf("the segment after a long delta has room for %d bytes of text", c)
	}
}
