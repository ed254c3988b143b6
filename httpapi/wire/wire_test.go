package wire

import (
	"bytes"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/internal/sse"
)

func TestNativeEncode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		ev   agentstream.Event
		want string
	}{
		{"delta", ev(3, agentstream.EventMessageDelta, agentstream.MessageDeltaData{MessageID: "m", Delta: "line\nbreak"}),
			"id: 3\nevent: message.delta\ndata: {\"message_id\":\"m\",\"delta\":\"line\\nbreak\"}\n\n"},
		// Pretty-printed arguments from a model still make one data line.
		{"tool call", ev(9, agentstream.EventToolCall, agentstream.ToolCallData{CallID: "c", Name: "n", Arguments: json.RawMessage("{\n  \"a\": 1\n}")}),
			"id: 9\nevent: tool.call\ndata: {\"call_id\":\"c\",\"name\":\"n\",\"arguments\":{\"a\":1}}\n\n"},
		{"rebuilt, no id", ev(0, agentstream.EventMessageCompleted, agentstream.MessageCompletedData{MessageID: "m", Role: "assistant", Content: "x"}),
			"event: message.completed\ndata: {\"message_id\":\"m\",\"role\":\"assistant\",\"content\":\"x\"}\n\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(NewNative(Stream{}).Encode(nil, tt.ev)); got != tt.want {
				t.Fatalf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestHeaders(t *testing.T) {
	t.Parallel()
	for _, name := range Names() {
		newEnc, _ := Lookup(name)
		h := http.Header{}
		newEnc(Stream{}).Header(h)
		if h.Get("Content-Type") != "text/event-stream" || h.Get("Cache-Control") != "no-cache" {
			t.Errorf("%s: headers %v", name, h)
		}
	}
}

func TestLookupUnknown(t *testing.T) {
	t.Parallel()
	_, err := Lookup("xml")
	e := agentstream.AsError(err)
	if err == nil || e.Code != agentstream.CodeInvalidRequest || !strings.Contains(e.Message, strings.Join(Names(), ", ")) || !strings.Contains(e.Message, `"xml"`) {
		t.Fatalf("Lookup(xml) = %v", err)
	}
}

// TestSeedSkipsStepEvents: the seed format has no steps.
func TestSeedSkipsStepEvents(t *testing.T) {
	t.Parallel()
	enc := NewSeed(Stream{})
	for _, e := range []agentstream.Event{
		ev(1, agentstream.EventStepStarted, agentstream.StepStartedData{Step: 1, MessageID: "m"}),
		ev(2, agentstream.EventStepCompleted, agentstream.StepCompletedData{Step: 1, MessageID: "m", FinishReason: "stop"}),
	} {
		if b := enc.Encode(nil, e); len(b) != 0 {
			t.Errorf("%s: wrote %q", e.Type, b)
		}
	}
}

func TestDecodeDelta(t *testing.T) {
	t.Parallel()
	for _, data := range []string{
		`{"message_id":"m","delta":"plain"}`,
		`{"message_id":"m","delta":"esc \" \\ \/ \b \f \n \r \t \u0041 \u00e9 \ud83d\ude00 \ud800 \ud800\u0041 \udc00"}`,
		`{"message_id":"m","delta":"raw é 😀"}`,
		`{"delta":"reordered","message_id":"m"}`,
		`{ "message_id" : "m" , "delta" : "spaced" }`,
		`{"message_id":"m\u0031","delta":"escaped id"}`,
		"{\"message_id\":\"m\",\"delta\":\"bad \xff utf8\"}",
		"{\"message_id\":\"m\",\"delta\":\"raw \x01 control\"}",
		`{"message_id":"m","delta":"bad \x escape"}`,
		`{"message_id":"m","delta":"cut`,
		`not json`,
	} {
		checkDelta(t, []byte(data))
	}
}

// checkDelta checks DecodeDelta against encoding/json.
func checkDelta(t *testing.T, data []byte) {
	t.Helper()
	var want agentstream.MessageDeltaData
	wantErr := json.Unmarshal(data, &want)
	text, id, ok := DecodeDelta([]byte("x"), data)
	if ok != (wantErr == nil) {
		t.Fatalf("DecodeDelta(%q) ok %v, encoding/json error %v", data, ok, wantErr)
	}
	if ok && (string(text) != "x"+want.Delta || string(id) != want.MessageID) {
		t.Fatalf("DecodeDelta(%q) = %q, %q; want %q, %q", data, text, id, "x"+want.Delta, want.MessageID)
	}
}

func FuzzDecodeDelta(f *testing.F) {
	f.Add("m", "Hello \"world\"\n é \u2028 <&>")
	f.Add("msg_1", "\xff\xc3 \x00")
	f.Fuzz(func(t *testing.T, id, delta string) {
		checkDelta(t, agentstream.NewDeltaEvent(id, delta).Data)
		checkDelta(t, []byte(`{"message_id":"`+id+`","delta":"`+delta+`"}`))
	})
}

// randomRun is a run's events as a log or storedEnd gives them, made from
// seed: any mix of the non-terminal events (step events included), then
// one terminal event; or, when rebuilt, message.completed events without
// ids, then the terminal event at a far id.
func randomRun(seed uint64) []agentstream.Event {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	texts := []string{"", "a", "Hello ", "\"q\"\n", "é😀", "<&>", "\u2028", "\xff", "data: x\n\nid: 3"}
	text := func() string { return texts[rng.IntN(len(texts))] }
	var evs []agentstream.Event
	if rng.IntN(4) == 0 {
		for range rng.IntN(3) {
			evs = append(evs, agentstream.NewEvent(agentstream.EventMessageCompleted, agentstream.MessageCompletedData{MessageID: "m" + text(), Role: agentstream.RoleAssistant, Content: text()}))
		}
	} else {
		for i := range rng.IntN(40) {
			msg := "m" + string(rune('0'+i/8))
			var e agentstream.Event
			switch rng.IntN(9) {
			case 0:
				e = agentstream.NewEvent(agentstream.EventRunCreated, agentstream.RunCreatedData{RunID: "r", ThreadID: "t", Agent: text(), Status: agentstream.RunRunning})
			case 1:
				e = agentstream.NewEvent(agentstream.EventRunQueued, agentstream.RunQueuedData{Position: rng.IntN(3)})
			case 2:
				e = agentstream.NewEvent(agentstream.EventStepStarted, agentstream.StepStartedData{Step: i, MessageID: msg})
			case 3:
				e = agentstream.NewDeltaEvent(msg, text())
			case 4:
				e = agentstream.NewEvent(agentstream.EventToolArgumentsDelta, agentstream.ToolArgumentsDeltaData{CallID: "c", Name: text(), Delta: text()})
			case 5:
				e = agentstream.NewEvent(agentstream.EventToolCall, agentstream.ToolCallData{CallID: "c", Name: text(), Arguments: json.RawMessage(`{"a":1}`)})
			case 6:
				e = agentstream.NewEvent(agentstream.EventToolResult, agentstream.ToolResultData{CallID: "c", Name: text(), Output: text(), IsError: rng.IntN(2) == 0})
			case 7:
				e = agentstream.NewEvent(agentstream.EventMessageCompleted, agentstream.MessageCompletedData{MessageID: msg, Role: agentstream.RoleAssistant, Content: text()})
			default:
				e = agentstream.NewEvent(agentstream.EventStepCompleted, agentstream.StepCompletedData{Step: i, MessageID: msg, FinishReason: text()})
			}
			e.Seq = int64(len(evs) + 1)
			evs = append(evs, e)
		}
	}
	terminal := []agentstream.EventType{agentstream.EventRunCompleted, agentstream.EventRunFailed, agentstream.EventRunCancelled, agentstream.EventRunInterrupted}[rng.IntN(4)]
	end := agentstream.RunEndData{RunID: "r", Status: agentstream.RunCompleted}
	if terminal != agentstream.EventRunCompleted && rng.IntN(2) == 0 {
		end.Error = &agentstream.ErrorInfo{Code: agentstream.CodeUpstream, Message: text()}
	}
	e := agentstream.NewEvent(terminal, end)
	e.Seq = int64(len(evs) + 1)
	if len(evs) > 0 && evs[0].Seq == 0 {
		e.Seq = 1<<20 + 7
	}
	return append(evs, e)
}

// endMarkers are the bytes that end a stream of each format, after its
// terminal event.
var endMarkers = map[string]string{"seed": `{"status":"done"}`, "ui": "[DONE]", "openai": "[DONE]"}

// endEvents tell the event that ends a stream of each format whose end
// is neither a fixed marker nor the native terminal event.
var endEvents = map[string]func(sse.Event) bool{"ag-ui": aguiEnd}

func countEnds(evs []sse.Event, end func(sse.Event) bool) int {
	n := 0
	for _, e := range evs {
		if end(e) {
			n++
		}
	}
	return n
}

// checkStreams checks every registered format on one run: the stream is
// well-formed SSE (internal/sse reads it to its end, ids are the run's),
// it ends exactly once, and a stream resumed after any event is the rest
// of the whole stream, openings and heartbeats aside.
func checkStreams(t *testing.T, evs []agentstream.Event) {
	t.Helper()
	for _, name := range Names() {
		whole := encodeStream(name, evs, 0, true)
		r := sse.NewReader(bytes.NewReader(whole))
		var got []sse.Event
		for {
			e, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v in\n%s", name, err, whole)
			}
			got = append(got, e)
		}
		if len(got) == 0 {
			t.Fatalf("%s: no events in\n%s", name, whole)
		}
		last := got[len(got)-1]
		if m, ok := endMarkers[name]; ok {
			if last.Data != m || strings.Count(string(whole), m) != 1 {
				t.Fatalf("%s: want one end %s, last; got\n%s", name, m, whole)
			}
		} else if end, ok := endEvents[name]; ok {
			if n := countEnds(got, end); !end(last) || n != 1 {
				t.Fatalf("%s: want one end, last; got %d in\n%s", name, n, whole)
			}
		} else if !agentstream.EventType(last.Type).Terminal() {
			t.Fatalf("%s: last event %q, not terminal", name, last.Type)
		}
		terminals := 0
		for _, e := range got {
			if agentstream.EventType(e.Type).Terminal() {
				terminals++
			}
		}
		if name == "native" && terminals != 1 {
			t.Fatalf("native: %d terminal events", terminals)
		}
		body := encodeStream(name, evs, 0, false)
		for i, e := range evs {
			if e.Seq == 0 {
				continue
			}
			rest := encodeStream(name, evs, e.Seq, false)
			if !bytes.HasSuffix(body, rest) || !bytes.Equal(encodeStream(name, evs[:i+1], 0, false), body[:len(body)-len(rest)]) {
				t.Fatalf("%s: resumed after %d:\n%s\nis not the rest of\n%s", name, e.Seq, rest, body)
			}
		}
	}
}

// encodeStream is the stream of format name after event `after`, as
// streamRun writes it (the events up to after shown to a Skipper), with
// its opening and a heartbeat before every event when framing is set.
// The events up to after, when the stream is cut there, are encodeStream
// of evs[:i+1] without the terminal's End.
func encodeStream(name string, evs []agentstream.Event, after int64, framing bool) []byte {
	newEnc, _ := Lookup(name)
	enc := newEnc(Stream{RunID: "r", ThreadID: "t"})
	var b []byte
	if framing {
		b = enc.Start(b)
	}
	for _, e := range evs {
		if after > 0 && (e.Seq <= after) {
			if sk, ok := enc.(Skipper); ok {
				sk.Skip(e)
			}
			continue
		}
		if framing {
			b = enc.Heartbeat(b)
		}
		b = EncodeEvent(enc, b, e)
	}
	return b
}

func TestStreamsWellFormed(t *testing.T) {
	t.Parallel()
	for seed := range uint64(300) {
		checkStreams(t, randomRun(seed))
	}
}

func FuzzStreams(f *testing.F) {
	for seed := range uint64(20) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, seed uint64) { checkStreams(t, randomRun(seed)) })
}
