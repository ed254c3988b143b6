package bench

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentstream/agentstream/internal/sse"
	"github.com/agentstream/agentstream/sim"
)

func TestParseStamps(t *testing.T) {
	for _, tc := range []struct {
		text string
		want []int64
	}{
		{"", nil},
		{"[simulated] lorem ipsum", nil},
		{"[simulated]t1767225600000000 ", []int64{1767225600000000}},
		{"t1 t2 t3", []int64{1, 2, 3}},
		{"t12 ", []int64{12}},
		{"  t5\n\tt6  ", []int64{5, 6}},
		{"t", nil},
		{"tt5 t5x x5 t-5 t+5 T5", nil},
		{"t9223372036854775807", []int64{1<<63 - 1}},
		{"t9223372036854775808", nil},  // overflows
		{"t00000000000000000001", nil}, // 20 digits
		{"t05", nil},                   // leading zero
		{"t0", []int64{0}},
		{"[simulated]", nil},
		{"[simulated]t7[simulated]t8", nil},
		{"word t42 word", []int64{42}},
		{"t١٢", nil}, // non-ASCII digits
	} {
		if got := ParseStamps(tc.text, nil); !slices.Equal(got, tc.want) {
			t.Errorf("ParseStamps(%q) = %v, want %v", tc.text, got, tc.want)
		}
	}
	// Appends to dst.
	if got := ParseStamps("t3", []int64{1, 2}); !slices.Equal(got, []int64{1, 2, 3}) {
		t.Errorf("appending: %v", got)
	}
}

// TestParseStampsOfSim: what the simulator stamps is what is parsed, one
// token at a time or all joined.
func TestParseStampsOfSim(t *testing.T) {
	const n = 5
	var joined []byte
	var want []int64
	base := time.UnixMicro(1767225600000000)
	for i := range n {
		at := base.Add(time.Duration(i) * 50 * time.Millisecond)
		tok := sim.AppendStampToken(nil, i, n, at)
		if got := ParseStamps(string(tok), nil); !slices.Equal(got, []int64{at.UnixMicro()}) {
			t.Errorf("token %d %q parsed as %v", i, tok, got)
		}
		joined = append(joined, tok...)
		want = append(want, at.UnixMicro())
	}
	if got := ParseStamps(string(joined), nil); !slices.Equal(got, want) {
		t.Errorf("%q parsed as %v, want %v", joined, got, want)
	}
	if got := ParseStamps(sim.StampText(3, base), nil); len(got) != 3 {
		t.Errorf("StampText parsed as %v", got)
	}
}

func TestBenchParseEvents(t *testing.T) {
	d, err := ParseNativeDelta(`{"message_id":"msg_1","delta":"[simulated]t5 "}`)
	if err != nil || d != "[simulated]t5 " {
		t.Errorf("native delta %q, %v", d, err)
	}
	if _, err := ParseNativeDelta(`{"delta":`); err == nil {
		t.Error("a truncated native delta parsed")
	}
	c, err := ParseSeedChunk(`{"delta":"t7","complete":false}`)
	if err != nil || c.Delta == nil || *c.Delta != "t7" || c.Complete {
		t.Errorf("seed delta %+v, %v", c, err)
	}
	c, err = ParseSeedChunk(`{"error":"boom","code":"upstream_error","thread_id":"t","run_id":"r"}`)
	if err != nil || c.Error == nil || c.Code != "upstream_error" || c.Delta != nil {
		t.Errorf("seed error %+v, %v", c, err)
	}
	content, done, err := ParseCompletionChunk(`{"id":"x","choices":[{"index":0,"delta":{"content":"t9 "},"finish_reason":null}]}`)
	if err != nil || done || content != "t9 " {
		t.Errorf("completion chunk %q %v %v", content, done, err)
	}
	if _, done, err := ParseCompletionChunk("[DONE]"); !done || err != nil {
		t.Errorf("[DONE]: %v %v", done, err)
	}
	if content, _, err := ParseCompletionChunk(`{"choices":[],"usage":{"prompt_tokens":1}}`); err != nil || content != "" {
		t.Errorf("usage chunk: %q %v", content, err)
	}

	// The stream readers' verdicts.
	for _, tc := range []struct {
		name string
		ev   sse.Event
		want outcome
	}{
		{"native delta", sse.Event{Type: "message.delta", Data: `{"message_id":"m","delta":"hi"}`}, outcome{delta: "hi"}},
		{"native bad delta", sse.Event{Type: "message.delta", Data: `nope`}, outcome{fail: "bad_event"}},
		{"native completed", sse.Event{Type: "run.completed", Data: `{}`}, outcome{end: true}},
		{"native failed", sse.Event{Type: "run.failed", Data: `{"error":{"code":"upstream_error","message":"x"}}`}, outcome{end: true, fail: "run.failed:upstream_error"}},
		{"native interrupted", sse.Event{Type: "run.interrupted", Data: `garbage`}, outcome{end: true, fail: "run.interrupted"}},
		{"native other", sse.Event{Type: "run.started", Data: `{}`}, outcome{}},
	} {
		if got := nativeEvent(tc.ev); got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
	seed := func(lines ...string) []outcome {
		p := newSeedParser()
		var out []outcome
		for _, l := range lines {
			out = append(out, p.event(sse.Event{Type: "message", Data: l}))
		}
		return out
	}
	if got := seed(`{"delta":"a","complete":false}`, `{"response":"a","complete":true}`, `{"status":"done"}`); got[0] != (outcome{delta: "a"}) || got[2] != (outcome{end: true}) {
		t.Errorf("seed success: %+v", got)
	}
	if got := seed(`{"error":"x","code":"cancelled"}`, `{"status":"done"}`); got[1] != (outcome{end: true, fail: "seed_error:cancelled"}) {
		t.Errorf("seed error: %+v", got)
	}
	if got := seed(`{"status":"done"}`); got[0] != (outcome{end: true, fail: "missing_response"}) {
		t.Errorf("seed done without an answer: %+v", got)
	}
}

// FuzzDeltas feeds arbitrary bytes as an SSE stream through the three
// stream readers and the stamp parser, which read what other processes
// send: none may panic, and every stamp parsed must be written in the
// text as "t" and its digits.
func FuzzDeltas(f *testing.F) {
	f.Add([]byte("event: message.delta\ndata: {\"message_id\":\"m\",\"delta\":\"[simulated]t1767225600000000 \"}\n\n"))
	f.Add([]byte("data: {\"delta\":\"t1 t2\",\"complete\":false}\n\ndata: {\"status\":\"done\"}\n\n"))
	f.Add([]byte("data: {\"choices\":[{\"delta\":{\"content\":\"t9223372036854775807\"}}]}\n\ndata: [DONE]\n\n"))
	f.Add([]byte(": ok\r\n\r\nid: 1\r\nevent: run.failed\r\ndata: {\"error\":{\"code\":\"x\"}}\r\n\r\n"))
	f.Add([]byte("data: t99999999999999999999 t-1 tt \xff\n\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := sse.NewReader(bytes.NewReader(data))
		seed := newSeedParser()
		for range 1000 {
			ev, err := r.Next()
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("reader: %v", err)
				}
				break
			}
			for _, o := range []outcome{nativeEvent(ev), seed.event(ev), completionEvent(ev)} {
				checkStamps(t, o.delta)
			}
			checkStamps(t, ev.Data)
		}
	})
}

// FuzzStamps: any text parses without panic into stamps it holds; a
// stamped token made by the simulator parses back to its time.
func FuzzStamps(f *testing.F) {
	f.Add("[simulated]t1767225600000000 t1767225600050000", int64(1767225600000000), 0, 3)
	f.Add("t", int64(0), 2, 3)
	f.Add("tt9 \x00t18446744073709551615", int64(-5), 1, 1)
	f.Fuzz(func(t *testing.T, text string, us int64, i, n int) {
		checkStamps(t, text)
		if us < 0 || i < 0 || n <= i || n > 1<<20 {
			return
		}
		tok := sim.AppendStampToken(nil, i, n, time.UnixMicro(us))
		if got := ParseStamps(string(tok), nil); !slices.Equal(got, []int64{us}) {
			t.Fatalf("token %q parsed as %v, want [%d]", tok, got, us)
		}
	})
}

func checkStamps(t *testing.T, text string) {
	t.Helper()
	for _, us := range ParseStamps(text, nil) {
		if us < 0 || !strings.Contains(text, "t"+strconv.FormatInt(us, 10)) {
			t.Fatalf("ParseStamps(%q) found %d", text, us)
		}
	}
}
