package openai

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/agentstream/agentstream"
)

// pieces reads r at most n bytes at a time (all it can when n is 0).
type pieces struct {
	r io.Reader
	n int
}

func (p pieces) Read(b []byte) (int, error) {
	if p.n > 0 && len(b) > p.n {
		b = b[:p.n]
	}
	return p.r.Read(b)
}

// failing reads body, then fails with err.
func failing(body string, err error) io.Reader {
	return io.MultiReader(strings.NewReader(body), errReader{err})
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

var readSteps = []int{0, 1, 2, 7}

func TestSSEReader(t *testing.T) {
	long := strings.Repeat("x", 3*sseBufferSize+5)
	tests := []struct {
		name string
		body string
		max  int // 0 for the default
		err  error
		want []string
		// wantErr is the error after want, io.EOF when the body ends.
		wantErr error
	}{
		{name: "LF", body: "data: a\n\ndata: b\n\n", want: []string{"a", "b"}},
		{name: "CRLF", body: "data: a\r\n\r\ndata: b\r\n\r\n", want: []string{"a", "b"}},
		{name: "mixed line ends", body: "data: a\r\n\ndata: b\n\r\n", want: []string{"a", "b"}},
		{name: "no space after colon", body: "data:a\n\ndata:  b\n\n", want: []string{"a", " b"}},
		{name: "colon in value", body: "data: {\"a\":\"b:c\"}\n\n", want: []string{`{"a":"b:c"}`}},
		{name: "multi-line data", body: "data: {\"a\":\ndata: 1}\n\ndata: x\ndata:\ndata: y\n\n", want: []string{"{\"a\":\n1}", "x\n\ny"}},
		{name: "comments", body: ": keep-alive\n\n:\ndata: a\n: between\n\n", want: []string{"a"}},
		{name: "event, id, retry lines", body: "event: message\nid: 7\nretry: 10\ndata: a\n\nevent: ping\n\n", want: []string{"a"}},
		{name: "unknown field and no colon", body: "foo: bar\ndata\n\n", want: []string{""}},
		{name: "blank lines only", body: "\n\n\r\n\n"},
		{name: "BOM", body: "\uFEFFdata: a\n\n", want: []string{"a"}},
		{name: "event cut by EOF", body: "data: a\n\ndata: b\n", want: []string{"a"}},
		{name: "line cut by EOF", body: "data: a\n\ndata: b", want: []string{"a"}},
		{name: "empty", body: ""},
		{name: "line over the buffer", body: "data: " + long + "\n\ndata: b\n\n", want: []string{long, "b"}},
		{name: "line too large", body: "data: a\n\ndata: " + long + "\n\n", max: 2 * sseBufferSize, want: []string{"a"}, wantErr: errEventTooLarge},
		{name: "event too large", body: "data: a\n\n" + strings.Repeat("data: 0123456789\n", 20) + "\n", max: 100, want: []string{"a"}, wantErr: errEventTooLarge},
		{name: "read error", body: "data: a\n\ndata: b", err: io.ErrUnexpectedEOF, want: []string{"a"}, wantErr: io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		for _, step := range readSteps {
			t.Run(fmt.Sprintf("%s/step%d", tt.name, step), func(t *testing.T) {
				var r io.Reader = strings.NewReader(tt.body)
				if tt.err != nil {
					r = failing(tt.body, tt.err)
				}
				s := newSSEReader(pieces{r, step})
				if tt.max > 0 {
					s.max = tt.max
				}
				var got []string
				var err error
				for {
					var data []byte
					if data, err = s.next(); err != nil {
						break
					}
					got = append(got, string(data))
				}
				if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", tt.want) {
					t.Errorf("events %.200q\nwant   %.200q", got, tt.want)
				}
				wantErr := tt.wantErr
				if wantErr == nil {
					wantErr = io.EOF
				}
				if err != wantErr {
					t.Errorf("error %v, want %v", err, wantErr)
				}
			})
		}
	}
}

// TestSSEReaderReleasesLargeBuffers reads one event far larger than
// keepBuffer, then small ones: they decode, and the reader no longer holds
// the large buffers.
func TestSSEReaderReleasesLargeBuffers(t *testing.T) {
	t.Parallel()
	huge := strings.Repeat("y", 4*keepBuffer)
	s := newSSEReader(strings.NewReader("data: " + huge + "\n\ndata: a\n\ndata: b\n\n"))
	data, err := s.next()
	if err != nil || string(data) != huge {
		t.Fatalf("first event: %d bytes, %v", len(data), err)
	}
	if cap(s.line) <= keepBuffer || cap(s.data) <= keepBuffer {
		t.Fatalf("the huge event did not use the line and data buffers (caps %d, %d)", cap(s.line), cap(s.data))
	}
	for _, want := range []string{"a", "b"} {
		if data, err = s.next(); err != nil || string(data) != want {
			t.Fatalf("event %q, %v; want %q", data, err, want)
		}
		if cap(s.line) > keepBuffer || cap(s.data) > keepBuffer {
			t.Errorf("after %q the reader holds %d and %d bytes of buffers", want, cap(s.line), cap(s.data))
		}
	}
}

// eventReader gives one event per Read, as a paced stream does, and
// counts the reads that wait for an event (of at most waitSize bytes)
// made while s held a buffer.
type eventReader struct {
	evs         []string
	s           *sseReader
	waits, held int
}

func (e *eventReader) Read(p []byte) (int, error) {
	if len(p) == waitSize {
		e.waits++
		if e.s.br != nil || e.s.datap != nil || e.s.data != nil {
			e.held++
		}
	}
	if len(e.evs) == 0 {
		return 0, io.EOF
	}
	n := copy(p, e.evs[0])
	if e.evs[0] = e.evs[0][n:]; e.evs[0] == "" {
		e.evs = e.evs[1:]
	}
	return n, nil
}

// TestSSEReaderWaitsWithoutBuffers: between events, with nothing left to
// read, the reader holds no buffer while it waits for the next one, and
// events longer than that wait's read come whole.
func TestSSEReaderWaitsWithoutBuffers(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("z", 3*waitSize)
	want := []string{"a", long, "b", long}
	r := &eventReader{}
	for _, w := range want {
		r.evs = append(r.evs, "data: "+w+"\n\n")
	}
	s := newSSEReader(r)
	r.s = s
	for _, w := range want {
		if data, err := s.next(); err != nil || string(data) != w {
			t.Fatalf("event %.20q, %v; want %.20q", data, err, w)
		}
	}
	if _, err := s.next(); err != io.EOF {
		t.Fatalf("after the events: %v", err)
	}
	if r.waits != len(want)+1 || r.held != 0 {
		t.Errorf("%d reads waited for an event, %d of them with buffers held; want %d, 0", r.waits, r.held, len(want)+1)
	}
}

// TestSSEReaderDone: a stream that is over gives its buffers back, at
// its end and when it stops before it (after [DONE], on an error), with
// bytes still buffered.
func TestSSEReaderDone(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		body   string
		events int // read before done
	}{
		{"at the end", "data: a\n\n", 2},
		{"before the end", "data: a\n\ndata: [DONE]\n\n: trailing\n", 1},
		{"mid-event", "data: a\n\ndata: b", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newSSEReader(strings.NewReader(tc.body))
			for range tc.events {
				_, _ = s.next() // the last may be io.EOF
			}
			if tc.events == 1 {
				// Something is buffered: release alone keeps br.
				if _, err := s.reader(); err != nil || s.br == nil {
					t.Fatalf("no reader with bytes buffered: %v", err)
				}
			}
			s.done()
			if s.br != nil || s.datap != nil || s.data != nil || len(s.src.head) != 0 {
				t.Errorf("after done: reader %v, data buffer %v, head %q", s.br != nil, s.datap != nil, s.src.head)
			}
		})
	}
}

// lastRead gives body with err in one Read, then io.EOF.
type lastRead struct {
	body string
	err  error
}

func (l *lastRead) Read(p []byte) (int, error) {
	if l.body == "" {
		return 0, io.EOF
	}
	n := copy(p, l.body)
	l.body = l.body[n:]
	if l.body != "" {
		return n, nil
	}
	return n, l.err
}

// TestSSEReaderErrorWithLastEvent: an error that comes with the last
// event's bytes is the stream's error after that event, though the
// reader let go of its buffer (and of the error it held) in between.
func TestSSEReaderErrorWithLastEvent(t *testing.T) {
	t.Parallel()
	s := newSSEReader(&lastRead{body: "data: a\n\n", err: io.ErrUnexpectedEOF})
	if data, err := s.next(); err != nil || string(data) != "a" {
		t.Fatalf("event %q, %v; want \"a\"", data, err)
	}
	if _, err := s.next(); err != io.ErrUnexpectedEOF {
		t.Fatalf("after the event: %v, want %v", err, io.ErrUnexpectedEOF)
	}
}

// decodeBody decodes a streamed body read in pieces of step bytes.
func decodeBody(body []byte, step int) (agentstream.ModelResult, []agentstream.ModelDelta, error) {
	var rec recorder
	d := newChunkDecoder(pieces{bytes.NewReader(body), step})
	d.onDelta = rec.on
	_, err := consume(d)
	return d.acc.result(), rec.deltas, err
}

func sseBody(events ...string) string {
	var b strings.Builder
	for _, e := range events {
		b.WriteString("data: " + e + "\n\n")
	}
	return b.String()
}

func TestDecodeStream(t *testing.T) {
	tests := []struct {
		name        string
		body        string
		wantContent string
		wantFinish  string
		wantUsage   agentstream.Usage
		wantCalls   string // fmt of the tool calls
		// wantErr is in the domain error's message; "" for success.
		wantErr string
	}{
		{
			name:        "text, finish, usage, DONE",
			body:        sseBody(roleChunk(), textChunk("Hel"), textChunk("lo\n\"wörld\" 🎉"), finishChunk("stop"), usageChunk(3, 4), "[DONE]"),
			wantContent: "Hello\n\"wörld\" 🎉", wantFinish: "stop", wantUsage: agentstream.Usage{InputTokens: 3, OutputTokens: 4},
		},
		{
			name:        "CRLF, no space, comments, event lines",
			body:        ": hello\r\n\r\nevent: message\r\ndata:" + textChunk("a") + "\r\nid: 1\r\n\r\n: ping\r\n\r\ndata:" + finishChunk("stop") + "\r\n\r\ndata:[DONE]\r\n\r\n",
			wantContent: "a", wantFinish: "stop",
		},
		{
			name:        "chunk over several data lines",
			body:        "data: {\"choices\":[{\"index\":0,\ndata: \"delta\":{\"content\":\"x\"},\ndata: \"finish_reason\":\"length\"}]}\n\n",
			wantContent: "x", wantFinish: "length",
		},
		{
			name:        "nothing after DONE is read",
			body:        sseBody(textChunk("a"), finishChunk("stop"), "[DONE]", textChunk("b"), "{garbage"),
			wantContent: "a", wantFinish: "stop",
		},
		{
			name:        "end without DONE",
			body:        sseBody(textChunk("a"), finishChunk("stop")),
			wantContent: "a", wantFinish: "stop",
		},
		{
			name:        "empty data is skipped",
			body:        "data:\n\n" + sseBody(" ", textChunk("a"), finishChunk("stop")),
			wantContent: "a", wantFinish: "stop",
		},
		{
			name:        "usage null, absent, then set; an empty object is no usage of the last",
			body:        sseBody(chunkOf(choice(map[string]any{"content": "a"}, nil), nil), `{"choices":[]}`, usageChunk(1, 2), `{"choices":[],"usage":null}`, `{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`),
			wantContent: "a", wantFinish: "stop", wantUsage: agentstream.Usage{InputTokens: 1, OutputTokens: 2},
		},
		{
			name:        "refusal",
			body:        sseBody(`{"choices":[{"index":0,"delta":{"content":null,"refusal":"I can't"}}]}`, finishChunk("stop")),
			wantContent: "I can't", wantFinish: "stop",
		},
		{
			name:        "other choices are ignored",
			body:        sseBody(`{"choices":[{"index":1,"delta":{"content":"no"},"finish_reason":"length"},{"index":0,"delta":{"content":"yes"}}]}`, finishChunk("stop")),
			wantContent: "yes", wantFinish: "stop",
		},
		{
			name: "tool calls, one with escapes",
			body: sseBody(toolChunk(0, "call_a", "f", `{"q":`), toolChunk(0, "", "", `"a\"b\\n\u00e9 `+"é\n"+`"}`),
				toolChunk(1, "call_b", "g", "{}"), finishChunk("tool_calls")),
			wantCalls:  fmt.Sprint([]agentstream.ToolCall{{ID: "call_a", Name: "f", Arguments: `{"q":"a\"b\\n\u00e9 ` + "é\n" + `"}`}, {ID: "call_b", Name: "g", Arguments: "{}"}}),
			wantFinish: "tool_calls",
		},
		{
			// As with openai-go: a value of the wrong type is left zero,
			// the rest of the chunk is used.
			name:        "values of the wrong type are skipped",
			body:        sseBody(`{"choices":[{"index":0,"delta":{"content":"a","refusal":5},"finish_reason":7}]}`, `{"choices":[{"index":"1","delta":{"content":"b"}}],"usage":{"prompt_tokens":"1","completion_tokens":2}}`, finishChunk("stop")),
			wantContent: "ab", wantFinish: "stop", wantUsage: agentstream.Usage{OutputTokens: 2},
		},
		{
			name:        "error null is no error",
			body:        sseBody(`{"error":null,"choices":[{"index":0,"delta":{"content":"a"},"finish_reason":"stop"}]}`),
			wantContent: "a", wantFinish: "stop",
		},
		{
			name:        "error chunk",
			body:        sseBody(textChunk("a"), `{"error":{"message":"overloaded","type":"server_error"}}`, finishChunk("stop")),
			wantContent: "a", wantErr: "model stream sent an error: overloaded",
		},
		{
			name:    "error chunk with a string",
			body:    sseBody(`{"error":"quota for sk-abcdef exceeded"}`),
			wantErr: "model stream sent an error: quota for sk-[redacted] exceeded",
		},
		{
			name:    "error chunk without a message",
			body:    sseBody(`{"error":{"code":500}}`),
			wantErr: "model stream sent an error: unknown error",
		},
		{
			name:        "garbage JSON",
			body:        sseBody(textChunk("a"), `{"choices":[{"index":0,"delta":{"content":"b"}}`, finishChunk("stop")),
			wantContent: "a", wantErr: "model stream ended early: invalid chunk: unexpected end of JSON input",
		},
		{
			name:    "not JSON",
			body:    sseBody("hello"),
			wantErr: "model stream ended early: invalid chunk: invalid character",
		},
		{
			name:    "not an object",
			body:    sseBody(`[{"choices":[]}]`),
			wantErr: "model stream ended early: invalid chunk: not a JSON object",
		},
		{
			name:        "tool call index out of range",
			body:        sseBody(textChunk("a"), toolChunk(maxToolCalls, "c", "f", "{}")),
			wantContent: "a", wantErr: "model stream sent tool call index 128",
		},
	}
	m := newModel(t, "http://127.0.0.1:1", nil)
	ctx := context.Background()
	for _, tt := range tests {
		for _, step := range readSteps {
			t.Run(fmt.Sprintf("%s/step%d", tt.name, step), func(t *testing.T) {
				res, _, err := decodeBody([]byte(tt.body), step)
				if res.Content != tt.wantContent || res.FinishReason != tt.wantFinish || res.Usage != tt.wantUsage {
					t.Errorf("result %+v", res)
				}
				if tt.wantCalls != "" && fmt.Sprint(res.ToolCalls) != tt.wantCalls {
					t.Errorf("tool calls %v\nwant       %v", res.ToolCalls, tt.wantCalls)
				}
				if tt.wantErr == "" {
					if err != nil {
						t.Fatalf("error %v", err)
					}
					return
				}
				if err == nil {
					t.Fatalf("no error, want %q", tt.wantErr)
				}
				de, ok := err.(*agentstream.Error)
				if !ok {
					de = m.callError(ctx, ctx, err, true)
				}
				if de.Code != agentstream.CodeUpstream || !strings.Contains(de.Info().Message, tt.wantErr) {
					t.Errorf("error %s %q, want %q", de.Code, de.Info().Message, tt.wantErr)
				}
			})
		}
	}
}

// An event in several reads, including a read that ends inside a CRLF.
func TestDecodeStreamSplitReads(t *testing.T) {
	body := []byte(strings.ReplaceAll(string(realisticBody(50)), "\n", "\r\n"))
	want, _, err := decodeBody(body, 0)
	if err != nil || want.Usage.OutputTokens != 1000 || !strings.HasPrefix(want.Content, " tok0 tok1") {
		t.Fatalf("res %+v, err %v", want, err)
	}
	for step := 1; step < 40; step++ {
		got, deltas, err := decodeBody(body, step)
		if err != nil || got.Content != want.Content || got.Usage != want.Usage || len(deltas) != 50 {
			t.Fatalf("step %d: res %+v, err %v", step, got, err)
		}
	}
}

// The chunk struct is reused: nothing of a chunk must show in the next.
func TestDecodeChunkReuse(t *testing.T) {
	seq := []string{
		`{"choices":[{"index":0,"delta":{"content":"a","tool_calls":[{"index":0,"id":"c1","function":{"name":"f","arguments":"{"}},{"index":1,"id":"c2"}]},"finish_reason":"x"},{"index":1}],"usage":{"prompt_tokens":1},"error":null}`,
		`{"choices":[{"delta":{"tool_calls":[{"function":{"arguments":"}"}}]}}]}`,
		`{"choices":[{"index":0,"delta":{"tool_calls":[{},{"index":1,"id":"c3"}]},"finish_reason":"y"},{"index":2,"delta":{"content":"b"}}]}`,
		`{"choices":[{"index":0,"delta":{"refusal":"no"}}],"usage":null}`,
		// encoding/json: a case variant of a key
		`{"Choices":[{"index":0,"delta":{"tool_calls":[{"ID":"c4"}]}}],"usage":{"completion_tokens":2}}`,
		`{"choices":[{"index":0,"delta":{"tool_calls":[{"index":2,"function":{"name":"g"}}]}}]}`,
		`{"choices":null}`,
		`{}`,
	}
	var c chunk
	var st fastState
	for i, data := range seq {
		if err := decodeChunk([]byte(data), &c, &st); err != nil {
			t.Fatalf("chunk %d: %v", i, err)
		}
		var fresh chunk
		if err := json.Unmarshal([]byte(data), &fresh); err != nil {
			t.Fatal(err)
		}
		if got, want := canon(&c), canon(&fresh); got != want {
			t.Errorf("chunk %d:\n got %s\nwant %s", i, got, want)
		}
	}
}

// canon describes a chunk, with no difference between nil and empty.
func canon(c *chunk) string {
	var b strings.Builder
	fmt.Fprintf(&b, "usage %q error %q choices[", c.Usage, c.Error)
	for _, ch := range c.Choices {
		fmt.Fprintf(&b, "{%d %q %q %q [", ch.Index, ch.Delta.Content, ch.Delta.Refusal, ch.FinishReason)
		for _, tc := range ch.Delta.ToolCalls {
			fmt.Fprintf(&b, "{%d %q %q %q}", tc.Index, tc.ID, tc.Function.Name, tc.Function.Arguments)
		}
		b.WriteString("]}")
	}
	b.WriteString("]")
	return b.String()
}

// headTails follow the head of a chunk (what comes before "choices") in
// FuzzDecodeChunkFast's seeds: a chunk going on in ways valid and not.
var headTails = []string{
	`"choices":[{"index":0,"delta":{"content":"x"},"finish_reason":"stop"}]}`,
	` "choices" : [ ] } `,
	`}`,
	``,
	`"Choices":[]}`,
	`"choices":[],"choices":[]}`,
	`"id":"again","usage":{"prompt_tokens":1},"choices":[]}`,
	`"error":{"message":"x"}}`,
	`"choices":[{"index":0,"delta":{"content":"x"}}]}x`,
	`,"choices":[]}`,
	`"choices":[{"index":0,"delta":{"content":"\u00e9\ud83c"}}]`,
}

var chunkSeeds = []string{
	textChunk("Hello"),
	textChunk("line\nbreak \"quoted\" tab\t back\\slash é 🎉 \u2028"),
	`{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1747000000,"model":"m","service_tier":"default","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"content":" tok1"},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"7uK2x"}`,
	finishChunk("stop"),
	usageChunk(20, 1000),
	`{"choices":[],"usage":{"prompt_tokens":20,"completion_tokens":1000,"total_tokens":1020,"prompt_tokens_details":{"cached_tokens":0}}}`,
	toolChunk(0, "call_1", "get_weather", `{"city":"Paris"}`),
	toolChunk(3, "", "", `"}`),
	`{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"a\":[1,2,{\"b\":null}]}"}},{"index":1,"id":"x","type":"function","function":{"name":"n","arguments":""}}]}}]}`,
	`{"error":{"message":"overloaded","type":"server_error"}}`,
	`{"error":"boom"}`,
	`{"error":null,"choices":null,"usage":null}`,
	` { "choices" : [ { "index" : 0 , "delta" : { "content" : "a" } , "finish_reason" : "stop" } ] } `,
	`{"choices":[{"index":-0,"delta":{"content":"\ud83c\udf89 \ud83c x \udf89 \u00e9\u0000\/"}}]}`,
	`{"choices":[{"index":0,"delta":{"content":"bad utf8 ` + "\xff\xc3(\xed\xa0\x80" + `"}}]}`,
	`{"choices":[{"index":1.0,"delta":{"content":"a"}}]}`,
	`{"choices":[{"index":1e2,"delta":{"content":"a"}}]}`,
	`{"choices":[{"index":99999999999999999999,"delta":{"content":"a"}}]}`,
	`{"choices":[{"index":123456789012345678,"delta":{"content":"a"}}]}`,
	`{"choices":[{"index":"0","delta":{"content":5}}]}`,
	`{"choices":[{"index":0,"delta":{"content":"a","content":"b"}}]}`,
	`{"choices":[{"index":0,"delta":{"Content":"a"}}]}`,
	`{"choices":[{"index":0,"delta":{"\u0063ontent":"a"}}]}`,
	`{"choices":[{"index":0,"delta":{"conten\u212a":"a"}}]}`,
	`{"choices":[null,{"index":0,"delta":null},{"index":0,"delta":{"tool_calls":null}}]}`,
	`{"x":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]],"choices":[]}`,
	`{"x":{"a":[true,false,null,-1.5e+3,0.25,"s\"\\"]},"choices":[{"index":0,"delta":{"content":"k"}}]}`,
	`{"choices":[{"index":0,"delta":{"content":"a"}}]}x`,
	`{"choices":[{"index":0,"delta":{"content":"a"}},]}`,
	`{"choices":[{"index":01,"delta":{"content":"a"}}]}`,
	`{"choices":[{"index":0,"delta":{"content":"a\'"}}]}`,
	`{"choices":[{"index":0,"delta":{"content":"a` + "\x01" + `"}}]}`,
	`[1]`, `"s"`, `null`, `{}`, ``, `{"usage":{"prompt_tokens":"1"}}`, `{"usage":[]}`,
}

// FuzzDecodeChunkFast checks decodeChunkFast against encoding/json, and
// the reuse of the chunk struct: data decoded after prev into the same
// struct is what encoding/json makes of data alone.
func FuzzDecodeChunkFast(f *testing.F) {
	for _, s := range chunkSeeds {
		f.Add([]byte(textChunk("prev")), []byte(s))
		f.Add([]byte(chunkSeeds[8]), []byte(s))
		f.Add([]byte(chunkSeeds[2]), []byte(s))
	}
	// Pairs whose second chunk starts with the first's head, then goes
	// on differently (decodeChunkFast resumes after the head).
	for _, sh := range streamShapes {
		prev := sh.of("a")
		f.Add([]byte(prev), []byte(sh.of(`b\u00e9\ud83c\udf89`)))
		for _, tail := range headTails {
			if i := strings.Index(prev, `"choices"`); i > 0 {
				f.Add([]byte(prev), []byte(prev[:i]+tail))
			}
		}
	}
	f.Fuzz(func(t *testing.T, prev, data []byte) {
		var want chunk
		wantErr := json.Unmarshal(data, &want)
		var te *json.UnmarshalTypeError
		typeErr := errors.As(wantErr, &te)
		if typeErr {
			wantErr = nil
		}
		if wantErr == nil && bytes.TrimLeft(data, " \t\r\n")[0] != '{' {
			wantErr = errNotObject
		}

		// The fast path alone, then after prev with what prev left (the
		// head it kept: data may start with the same bytes).
		for _, first := range [][]byte{nil, prev} {
			var st fastState
			var fast chunk
			if first != nil {
				_ = decodeChunkFast(first, &fast, &st)
				fast.reset()
			}
			if decodeChunkFast(data, &fast, &st) {
				if wantErr != nil || typeErr {
					t.Fatalf("fast path decoded %q (after %q); encoding/json: %v", data, first, wantErr)
				}
				if got, want := canon(&fast), canon(&want); got != want {
					t.Fatalf("fast path on %q (after %q):\n got %s\nwant %s", data, first, got, want)
				}
			}
		}

		var st fastState
		var c chunk
		_ = decodeChunk(prev, &c, &st)
		err := decodeChunk(data, &c, &st)
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("decodeChunk(%q): %v; encoding/json: %v", data, err, wantErr)
		}
		if err == nil {
			if got, want := canon(&c), canon(&want); got != want {
				t.Fatalf("decodeChunk(%q) after %q:\n got %s\nwant %s", data, prev, got, want)
			}
		}
	})
}

// FuzzDecodeStream feeds arbitrary bodies to the stream decoder: it must
// not panic, must fail only with the errors it knows, and on success its
// result must be what its deltas said.
func FuzzDecodeStream(f *testing.F) {
	f.Add(realisticBody(3), uint8(0))
	f.Add([]byte(strings.ReplaceAll(string(realisticBody(2)), "\n", "\r\n")), uint8(3))
	for _, s := range chunkSeeds {
		f.Add([]byte(sseBody(textChunk("a"), s, finishChunk("stop"))), uint8(1))
	}
	f.Add([]byte(sseBody(toolChunk(0, "call_1", "a", `{"x":1}`), toolChunk(0, "call_2", "b", `{"y":`), toolChunk(0, "", "", `2}`), toolChunk(2, "", "c", "{}"), finishChunk("tool_calls"))), uint8(5))
	f.Add([]byte(": c\n\nevent: e\ndata:{\"choices\":[{\"index\":0,\ndata:\"delta\":{\"content\":\"a\"}}]}\n\ndata: [DONE]\n\n"), uint8(2))
	f.Fuzz(func(t *testing.T, body []byte, step uint8) {
		res, deltas, err := decodeBody(body, int(step%16))
		if err != nil {
			var (
				se *streamError
				ce *chunkError
				de *agentstream.Error
			)
			if !errors.As(err, &se) && !errors.As(err, &ce) && !errors.As(err, &de) && err != errEventTooLarge {
				t.Fatalf("unexpected error %T %v", err, err)
			}
			return
		}
		var text strings.Builder
		args := map[int]string{}
		ids := map[int]string{}
		for _, d := range deltas {
			text.WriteString(d.Text)
			if tc := d.ToolCall; tc != nil {
				if d.Text != "" || tc.ID == "" {
					t.Fatalf("delta %+v", d)
				}
				if id, ok := ids[tc.Index]; ok && id != tc.ID {
					t.Fatalf("call %d: ID %q then %q", tc.Index, id, tc.ID)
				}
				ids[tc.Index] = tc.ID
				args[tc.Index] += tc.Arguments
			}
		}
		if res.Content != text.String() {
			t.Fatalf("Content %q, deltas say %q", res.Content, text.String())
		}
		if len(res.ToolCalls) != len(ids) {
			t.Fatalf("%d tool calls, deltas say %d", len(res.ToolCalls), len(ids))
		}
		for i, p := range slices.Sorted(maps.Keys(ids)) {
			if tc := res.ToolCalls[i]; tc.ID != ids[p] || tc.Arguments != args[p] {
				t.Fatalf("call %d %+v, deltas say ID %q, arguments %q", i, tc, ids[p], args[p])
			}
		}
	})
}

// The chunks servers send take the fast path (encoding/json is the
// fallback, correct but several times slower).
func TestDecodeChunkFastTaken(t *testing.T) {
	body := realisticBody(2)
	var common []string
	for line := range strings.Lines(string(body)) {
		if data, ok := strings.CutPrefix(line, "data: "); ok && !strings.HasPrefix(data, "[DONE]") {
			common = append(common, strings.TrimSpace(data))
		}
	}
	common = append(common, chunkSeeds[:14]...)
	var st fastState
	for _, data := range common {
		var c chunk
		if !decodeChunkFast([]byte(data), &c, &st) {
			t.Errorf("fast path refused %s", data)
		}
	}
}
