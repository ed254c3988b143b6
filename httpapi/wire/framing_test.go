package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/internal/sse"
)

// hostileValues are strings that would break an SSE stream written
// carelessly: line ends of every kind followed by field lines or a blank
// line (an injected event), NUL, every other control character, Unicode
// line separators, a byte order mark, and a 1 MiB string of them.
func hostileValues() []string {
	var ctl strings.Builder
	for c := rune(1); c < 0x20; c++ {
		ctl.WriteRune(c)
	}
	ctl.WriteRune(0x7f)
	var huge strings.Builder
	for huge.Len() < 1<<20 {
		huge.WriteString("é日本\n\r\n\rdata: x\n\nevent: e\n\x00id: 9\n\n")
	}
	return []string{
		"a\nevent: injected\ndata: {\"x\":1}\n\nid: 999\n\n",
		"b\revent: injected\rdata: x\r\r",
		"c\r\nretry: 1\r\n\r\ndata: y\r\n\r\n",
		"nul\x00between\x00",
		ctl.String(),
		"\u2028\u2029\u0085 line separators",
		": comment\n:\n data",
		"\ufeffdata: after a BOM",
		"data: [DONE]\n\n",
		"\\n \\r \\u0000 \" ' < > &",
		huge.String(),
	}
}

// framingRun is a run that puts text of its own (texts[i]) in every
// string field of every event type, ids included; the stream's run,
// thread and agent are texts[0], texts[1] and texts[2].
func framingRun(texts []string, rebuilt bool) (Stream, []agentstream.Event) {
	at := func(i int) string { return texts[i%len(texts)] }
	s := Stream{RunID: at(0), ThreadID: at(1), Agent: at(2), Created: time.Unix(1700000000, 0)}
	args, _ := json.Marshal(map[string]string{"q": at(8)})
	var evs []agentstream.Event
	add := func(t agentstream.EventType, payload any) {
		e := agentstream.NewEvent(t, payload)
		e.Seq = int64(len(evs) + 1)
		evs = append(evs, e)
	}
	if rebuilt {
		// A finished run's end, from the store: Seq 0, then the terminal.
		for _, c := range []string{at(3), at(4)} {
			evs = append(evs, agentstream.NewEvent(agentstream.EventMessageCompleted,
				agentstream.MessageCompletedData{MessageID: at(5), Role: agentstream.RoleAssistant, Content: c}))
		}
		e := agentstream.NewEvent(agentstream.EventRunCompleted, agentstream.RunEndData{RunID: at(0), Status: agentstream.RunCompleted})
		e.Seq = 40
		return s, append(evs, e)
	}
	add(agentstream.EventRunCreated, agentstream.RunCreatedData{RunID: at(0), ThreadID: at(1), Agent: at(2), Status: agentstream.RunQueued})
	add(agentstream.EventRunQueued, agentstream.RunQueuedData{Position: 1})
	add(agentstream.EventRunStarted, agentstream.RunStartedData{RunID: at(0)})
	add(agentstream.EventStepStarted, agentstream.StepStartedData{Step: 1, MessageID: at(3)})
	add(agentstream.EventMessageDelta, agentstream.MessageDeltaData{MessageID: at(3), Delta: at(4)})
	add(agentstream.EventToolArgumentsDelta, agentstream.ToolArgumentsDeltaData{CallID: at(5), Name: at(6), Delta: at(7)})
	add(agentstream.EventToolArgumentsDelta, agentstream.ToolArgumentsDeltaData{CallID: at(5), Name: at(6), Delta: at(9)})
	add(agentstream.EventToolCall, agentstream.ToolCallData{CallID: at(5), Name: at(6), Arguments: args})
	add(agentstream.EventMessageCompleted, agentstream.MessageCompletedData{MessageID: at(3), Role: agentstream.RoleAssistant, Content: at(4)})
	add(agentstream.EventStepCompleted, agentstream.StepCompletedData{Step: 1, MessageID: at(3), FinishReason: "tool_calls"})
	add(agentstream.EventToolResult, agentstream.ToolResultData{CallID: at(5), Name: at(6), Output: at(10), IsError: true, DurationMS: 2})
	add(agentstream.EventToolResult, agentstream.ToolResultData{CallID: at(5), Name: at(6), Output: at(11), DurationMS: 2})
	add(agentstream.EventStepStarted, agentstream.StepStartedData{Step: 2, MessageID: at(12)})
	d := agentstream.NewDeltaEvent(at(12), at(13)) // the hand-written encoding
	d.Seq = int64(len(evs) + 1)
	evs = append(evs, d)
	add(agentstream.EventMessageDelta, agentstream.MessageDeltaData{MessageID: at(12), Delta: at(14)})
	add(agentstream.EventMessageCompleted, agentstream.MessageCompletedData{MessageID: at(12), Role: agentstream.RoleAssistant, Content: at(13) + at(14)})
	add(agentstream.EventRunFailed, agentstream.RunEndData{RunID: at(0), Status: agentstream.RunFailed,
		Error: &agentstream.ErrorInfo{Code: agentstream.Code(at(15)), Message: at(16)}})
	return s, evs
}

// encodeBeating is the whole stream enc writes for evs, with a heartbeat
// between each two events (it must add no event).
func encodeBeating(enc Encoder, evs []agentstream.Event) []byte {
	b := enc.Start(nil)
	for _, e := range evs {
		b = enc.Heartbeat(b)
		b = EncodeEvent(enc, b, e)
	}
	return b
}

func parseStream(t *testing.T, b []byte) []sse.Event {
	t.Helper()
	r := sse.NewReader(bytes.NewReader(b))
	var out []sse.Event
	for {
		e, err := r.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("parsing the stream: %v", err)
		}
		out = append(out, e)
	}
}

// TestFraming: whatever text a run's fields hold, every wire format's
// stream parses (with a real SSE parser) into the same events as the same
// run with plain text, and each event's data, JSON-decoded, holds the text
// unchanged where the plain run held its stand-in. So no value can end an
// event early, add a field or inject an event, and none is altered.
func TestFraming(t *testing.T) {
	t.Parallel()
	hostile := hostileValues()
	for _, name := range Names() {
		for _, rebuilt := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/rebuilt=%v", name, rebuilt), func(t *testing.T) {
				t.Parallel()
				checkFraming(t, name, rebuilt, hostile)
			})
		}
	}
}

// framingFields is how many texts framingRun uses.
const framingFields = 17

// checkFraming checks format name on framingRun with values in its
// fields (values[i%len] in field i) against the same run with plain
// text: the same events, and each event's data, JSON-decoded, holds the
// value where the plain run held its stand-in (a value that is not UTF-8
// with each bad byte as U+FFFD, as JSON must carry it).
func checkFraming(t *testing.T, name string, rebuilt bool, values []string) {
	t.Helper()
	plain, bad, shown := make([]string, framingFields), make([]string, framingFields), make([]string, framingFields)
	for i := range framingFields {
		plain[i] = fmt.Sprintf("\x60%02d\x60", i) // `07`: in no format's own text
		bad[i] = fmt.Sprintf("%d:%s", i, values[i%len(values)])
		shown[i] = string([]rune(bad[i]))
	}
	replace := func(s string) string {
		for i := range framingFields {
			s = strings.ReplaceAll(s, plain[i], shown[i])
		}
		return s
	}
	newEnc, err := Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	ps, pevs := framingRun(plain, rebuilt)
	bs, bevs := framingRun(bad, rebuilt)
	want := parseStream(t, encodeBeating(newEnc(ps), pevs))
	gotBytes := encodeBeating(newEnc(bs), bevs)
	got := parseStream(t, gotBytes)
	if len(want) == 0 {
		t.Fatal("the plain run made no events")
	}
	if len(got) != len(want) {
		t.Fatalf("%s: %d events, want %d (the plain run's)", name, len(got), len(want))
	}
	for i := range want {
		if got[i].Type != replace(want[i].Type) || got[i].ID != replace(want[i].ID) {
			t.Fatalf("%s: event %d: type %.60q id %.60q; want %.60q, %.60q", name, i, got[i].Type, got[i].ID, want[i].Type, want[i].ID)
		}
		var w, g any
		if json.Unmarshal([]byte(want[i].Data), &w) != nil {
			// Not JSON (data: [DONE]): the bytes are the same.
			if got[i].Data != want[i].Data {
				t.Fatalf("%s: event %d: data %.80q, want %.80q", name, i, got[i].Data, want[i].Data)
			}
			continue
		}
		if err := json.Unmarshal([]byte(got[i].Data), &g); err != nil {
			t.Fatalf("%s: event %d: data is not JSON: %v: %.200q", name, i, err, got[i].Data)
		}
		if w = replaceStrings(w, replace); !reflect.DeepEqual(g, w) {
			t.Fatalf("%s: event %d (%s): data differs\ngot  %.300q\nwant %.300q", name, i, want[i].Type, got[i].Data, fmt.Sprint(w))
		}
	}
	// Whatever the values, every line of the stream is a field, a comment
	// or blank: no value's bytes begin a line of their own.
	for _, line := range strings.FieldsFunc(string(gotBytes), func(r rune) bool { return r == '\n' || r == '\r' }) {
		if !strings.HasPrefix(line, "data:") && !strings.HasPrefix(line, "event:") && !strings.HasPrefix(line, "id:") &&
			!strings.HasPrefix(line, "retry:") && !strings.HasPrefix(line, ":") {
			t.Fatalf("%s: a line that is no SSE field: %.100q", name, line)
		}
	}
}

// fuzzEncoder fuzzes format name's encoder with two values spread over
// every string field of every event (checkFraming), seeded with the
// hostile values.
func fuzzEncoder(f *testing.F, name string) {
	for _, v := range hostileValues() {
		if len(v) < 4096 { // the 1 MiB one is TestFraming's
			f.Add(v, "plain", false)
		}
	}
	f.Add("a\nb", "\xff\xfe\xed\xa0\x80", true)
	f.Add("\r", "\x00", false)
	f.Fuzz(func(t *testing.T, a, b string, rebuilt bool) {
		checkFraming(t, name, rebuilt, []string{a, b})
	})
}

func FuzzEncodeNative(f *testing.F) { fuzzEncoder(f, "native") }
func FuzzEncodeSeed(f *testing.F)   { fuzzEncoder(f, "seed") }
func FuzzEncodeOpenAI(f *testing.F) { fuzzEncoder(f, "openai") }
func FuzzEncodeUI(f *testing.F)     { fuzzEncoder(f, "ui") }
func FuzzEncodeAGUI(f *testing.F)   { fuzzEncoder(f, "ag-ui") }

// TestFuzzedEveryFormat: each registered format has its fuzz target.
func TestFuzzedEveryFormat(t *testing.T) {
	t.Parallel()
	if got := Names(); !slices.Equal(got, []string{"ag-ui", "native", "openai", "seed", "ui"}) {
		t.Fatalf("formats %v: add a FuzzEncode target for the new one", got)
	}
}

// replaceStrings returns v, decoded JSON, with f applied to each string
// and object key.
func replaceStrings(v any, f func(string) string) any {
	switch v := v.(type) {
	case string:
		return f(v)
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = replaceStrings(e, f)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[f(k)] = replaceStrings(e, f)
		}
		return out
	}
	return v
}
