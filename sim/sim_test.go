package sim_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentstream/agentstream/sim"
)

func TestStream(t *testing.T) {
	r := start(t, fast(sim.Options{}))
	for _, tc := range []struct {
		name         string
		tokens       int
		includeUsage bool
	}{
		{"default length with usage", 0, true},
		{"one token", 1, true},
		{"five tokens without usage", 5, false},
		{"longer than the word list", 100, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tokens := tc.tokens
			r.Server().SetOptions(fast(sim.Options{Tokens: tokens}))
			if tokens == 0 {
				tokens = sim.DefaultTokens
			}
			body := chatRequest{Model: "gpt-test", Stream: true, Messages: []msg{{Role: "system", Content: "be brief"}, user("hello there")}}
			if tc.includeUsage {
				body.StreamOptions = map[string]any{"include_usage": true}
			}
			resp := post(t, context.Background(), r.URL(), body, nil)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
				t.Errorf("Content-Type %q", ct)
			}
			s := readStream(t, resp.Body, nil)
			if s.err != nil {
				t.Fatalf("read: %v", s.err)
			}
			if !s.roleFirst {
				t.Errorf("first chunk is not the role chunk: %+v", s.chunks[0])
			}
			want := sim.DefaultText(tokens)
			if s.contentJoined != want {
				t.Errorf("content %q, want %q", s.contentJoined, want)
			}
			if !strings.HasPrefix(s.contentJoined, "[simulated] ") && tokens > 1 {
				t.Errorf("content %q does not start with [simulated]", s.contentJoined)
			}
			if len(s.contents) != tokens {
				t.Errorf("%d content chunks, want %d", len(s.contents), tokens)
			}
			for i, c := range s.contents[:len(s.contents)-1] {
				if strings.Count(c, " ") != 1 || !strings.HasSuffix(c, " ") {
					t.Errorf("token %d %q is not a word and a space", i, c)
				}
			}
			if !s.done || s.afterDone {
				t.Errorf("done %v, data after done %v", s.done, s.afterDone)
			}
			if s.finish != "stop" {
				t.Errorf("finish %q", s.finish)
			}
			id := s.chunks[0].ID
			for _, c := range s.chunks {
				if c.Object != "chat.completion.chunk" || c.Model != "gpt-test" || c.ID != id || c.Created == 0 {
					t.Errorf("chunk header %+v", c)
				}
			}
			if !strings.HasPrefix(id, "chatcmpl-sim-") {
				t.Errorf("id %q", id)
			}
			if !tc.includeUsage {
				if s.usage != nil {
					t.Errorf("usage without include_usage: %+v", s.usage)
				}
				return
			}
			last := s.chunks[len(s.chunks)-1]
			if len(last.Choices) != 0 || last.Usage == nil {
				t.Fatalf("last chunk is not the usage chunk: %+v", last)
			}
			// 2 messages + "be brief" + "hello there".
			if u := *last.Usage; u.PromptTokens != 6 || u.CompletionTokens != tokens || u.TotalTokens != 6+tokens {
				t.Errorf("usage %+v", u)
			}
		})
	}
}

func TestComplete(t *testing.T) {
	r := start(t, fast(sim.Options{Tokens: 7}))
	resp := post(t, context.Background(), r.URL(), chatRequest{Model: "m", Messages: []msg{user("hi")}}, nil)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var c struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		Model   string `json:"model"`
		Choices []struct {
			Index   int `json:"index"`
			Message struct {
				Role      string     `json:"role"`
				Content   *string    `json:"content"`
				ToolCalls []toolCall `json:"tool_calls"`
			} `json:"message"`
			FinishReason string `json:"finish_reason"`
		} `json:"choices"`
		Usage usage `json:"usage"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
		t.Fatal(err)
	}
	if c.Object != "chat.completion" || c.Model != "m" || !strings.HasPrefix(c.ID, "chatcmpl-sim-") || len(c.Choices) != 1 {
		t.Fatalf("completion %+v", c)
	}
	m := c.Choices[0].Message
	if m.Role != "assistant" || m.Content == nil || *m.Content != sim.DefaultText(7) || c.Choices[0].FinishReason != "stop" {
		t.Errorf("choice %+v", c.Choices[0])
	}
	if c.Usage != (usage{PromptTokens: 2, CompletionTokens: 7, TotalTokens: 9}) {
		t.Errorf("usage %+v", c.Usage)
	}
}

const timeParams = `{
	"type": "object",
	"properties": {
		"timezone": {"type": "string", "examples": ["Europe/Paris", "UTC"], "default": "UTC"},
		"format": {"type": "string", "default": "rfc3339", "enum": ["unix", "rfc3339"]},
		"unit": {"enum": ["celsius", "fahrenheit"]},
		"count": {"type": "integer"},
		"ratio": {"type": ["null", "number"]},
		"verbose": {"type": "boolean"},
		"tags": {"type": "array", "items": {"type": "string"}},
		"options": {"type": "object", "properties": {"depth": {"type": "integer"}, "name": {"type": "string"}}, "required": ["depth"]},
		"note": {"type": "string"},
		"optional": {"type": "string"}
	},
	"required": ["timezone", "format", "unit", "count", "ratio", "verbose", "tags", "options", "note"]
}`

const timeArgs = `{"timezone":"Europe/Paris","format":"rfc3339","unit":"celsius","count":1,"ratio":1,` +
	`"verbose":true,"tags":["example"],"options":{"depth":1},"note":"example"}`

func TestToolCallByMention(t *testing.T) {
	r := start(t, fast(sim.Options{}))
	tools := []tool{
		fnTool("weather", `{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}`),
		fnTool("current_time", timeParams),
		fnTool("unused", `{"type":"object"}`),
	}
	for _, tc := range []struct {
		name   string
		prompt string
		want   []function
	}{
		{"one tool", "what is the current_time?", []function{{"current_time", timeArgs}}},
		{"two tools in tools order", "current_time and weather please", []function{{"weather", `{"city":"example"}`}, {"current_time", timeArgs}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := chatRequest{Model: "m", Stream: true, Tools: tools, Messages: []msg{user(tc.prompt)}}
			s := readStream(t, post(t, context.Background(), r.URL(), body, nil).Body, nil)
			if s.err != nil || !s.done {
				t.Fatalf("err %v, done %v", s.err, s.done)
			}
			if s.finish != "tool_calls" || len(s.contents) != 0 {
				t.Errorf("finish %q, contents %q", s.finish, s.contents)
			}
			if len(s.calls) != len(tc.want) {
				t.Fatalf("calls %+v, want %+v", s.calls, tc.want)
			}
			for i, c := range s.calls {
				if c.Function != tc.want[i] || c.Type != "function" || !strings.HasPrefix(c.ID, "call_") {
					t.Errorf("call %d: %+v, want %+v", i, c, tc.want[i])
				}
				if !json.Valid([]byte(c.Function.Arguments)) {
					t.Errorf("call %d: invalid arguments %q", i, c.Function.Arguments)
				}
				if want := (len(tc.want[i].Arguments) + 3) / 4; s.argChunks[i] != want {
					t.Errorf("call %d: %d argument chunks, want %d", i, s.argChunks[i], want)
				}
			}
			if len(s.calls) == 2 && s.calls[0].ID == s.calls[1].ID {
				t.Errorf("two calls with id %q", s.calls[0].ID)
			}
		})
	}

	t.Run("tool result", func(t *testing.T) {
		body := chatRequest{Model: "m", Stream: true, Tools: tools, Messages: []msg{
			user("what is the current_time and the weather?"),
			{Role: "assistant", ToolCalls: []toolCall{
				{ID: "call_1", Type: "function", Function: function{"current_time", "{}"}},
				{ID: "call_2", Type: "function", Function: function{"weather", "{}"}},
			}},
			{Role: "tool", ToolCallID: "call_1", Content: "2024-05-01T12:00:00Z"},
			{Role: "tool", ToolCallID: "call_2", Content: "sunny,\n 21 °C"},
		}}
		s := readStream(t, post(t, context.Background(), r.URL(), body, nil).Body, nil)
		if s.err != nil || !s.done || s.finish != "stop" || len(s.calls) != 0 {
			t.Fatalf("err %v, done %v, finish %q, calls %v", s.err, s.done, s.finish, s.calls)
		}
		want := "[simulated] The tool current_time returned: 2024-05-01T12:00:00Z. The tool weather returned: sunny,\n 21 °C."
		if s.contentJoined != want {
			t.Errorf("content %q, want %q", s.contentJoined, want)
		}
		if len(s.contents) != len(sim.Split(want)) {
			t.Errorf("%d chunks, want one per word", len(s.contents))
		}
	})
}

func TestDecide(t *testing.T) {
	var calls int
	var mu sync.Mutex
	r := start(t, fast(sim.Options{Decide: func(req *sim.Request) sim.Behavior {
		mu.Lock()
		defer mu.Unlock()
		calls++
		switch req.LastMessage().Content {
		case "parallel":
			return sim.Behavior{ArgChunk: 2, ToolCalls: []sim.ToolCallSpec{
				{Name: "a", Arguments: `{"x":1}`},
				{ID: "call_mine", Name: "b", Arguments: `{"broken": `},
			}}
		case "text":
			return sim.Behavior{Text: "  exactly this text\t please "}
		case "fault":
			return sim.Behavior{Fault: sim.Fault500}
		}
		return sim.Behavior{Tokens: 3}
	}}))
	base := r.URL()

	s := readStream(t, post(t, context.Background(), base, chatRequest{Model: "m", Stream: true, Messages: []msg{user("parallel")}}, nil).Body, nil)
	if s.finish != "tool_calls" || len(s.calls) != 2 {
		t.Fatalf("finish %q, calls %+v", s.finish, s.calls)
	}
	if c := s.calls[0]; c.Function != (function{"a", `{"x":1}`}) || !strings.HasPrefix(c.ID, "call_") || s.argChunks[0] != 4 {
		t.Errorf("call 0 %+v in %d chunks", c, s.argChunks[0])
	}
	if c := s.calls[1]; c.Function != (function{"b", `{"broken": `}) || c.ID != "call_mine" || s.argChunks[1] != 6 {
		t.Errorf("call 1 %+v in %d chunks", c, s.argChunks[1])
	}

	s = readStream(t, post(t, context.Background(), base, chatRequest{Model: "m", Stream: true, Messages: []msg{user("text")}}, nil).Body, nil)
	if s.contentJoined != "  exactly this text\t please " || len(s.contents) != 4 {
		t.Errorf("content %q in %q", s.contentJoined, s.contents)
	}

	s = readStream(t, post(t, context.Background(), base, chatRequest{Model: "m", Stream: true, Messages: []msg{user("other")}}, nil).Body, nil)
	if s.contentJoined != sim.DefaultText(3) {
		t.Errorf("content %q", s.contentJoined)
	}

	if resp := post(t, context.Background(), base, chatRequest{Model: "m", Messages: []msg{user("fault")}}, nil); resp.StatusCode != 500 {
		t.Errorf("fault status %d", resp.StatusCode)
	}
	if calls != 4 {
		t.Errorf("Decide called %d times", calls)
	}
}

func TestStatusFaults(t *testing.T) {
	for _, tc := range []struct {
		fault     sim.Fault
		failFirst int
		typ, code string
	}{
		{sim.Fault500, 1, "server_error", "server_error"},
		{sim.Fault429, 1, "requests", "rate_limit_exceeded"},
		{sim.Fault429, 0, "requests", "rate_limit_exceeded"},
		{"503", 2, "server_error", "server_error"},
		{"401", 1, "invalid_request_error", "invalid_api_key"},
	} {
		t.Run(fmt.Sprintf("%s first %d", tc.fault, tc.failFirst), func(t *testing.T) {
			r := start(t, fast(sim.Options{Fault: tc.fault, FailFirst: tc.failFirst}))
			failing := tc.failFirst
			if failing == 0 {
				failing = 3
			}
			for i := range failing + 1 {
				resp := post(t, context.Background(), r.URL(), chatRequest{Model: "m", Stream: i%2 == 0, Messages: []msg{user("hi")}}, nil)
				if i == failing && tc.failFirst > 0 {
					if resp.StatusCode != http.StatusOK {
						t.Fatalf("request %d: status %d after FailFirst", i, resp.StatusCode)
					}
					continue
				}
				if i == failing {
					break
				}
				if resp.StatusCode != tc.fault.Status() {
					t.Fatalf("request %d: status %d, want %d", i, resp.StatusCode, tc.fault.Status())
				}
				msg, typ, code := errorBody(t, resp)
				if typ != tc.typ || code != tc.code || !strings.HasPrefix(msg, "[simulated]") {
					t.Errorf("error %q %q %q", msg, typ, code)
				}
				if tc.fault == sim.Fault429 {
					if resp.Header.Get("Retry-After") != "0" || resp.Header.Get("Retry-After-Ms") != "10" {
						t.Errorf("retry headers %v", resp.Header)
					}
				}
			}
			if n := len(r.Server().Requests()); n != failing+1 && tc.failFirst > 0 {
				t.Errorf("%d requests recorded", n)
			}
		})
	}
}

func TestCut(t *testing.T) {
	for _, after := range []int{0, 3, 100} {
		t.Run(fmt.Sprint("after ", after), func(t *testing.T) {
			r := start(t, fast(sim.Options{Tokens: 10, Fault: sim.FaultCut, FaultAfter: after}))
			resp := post(t, context.Background(), r.URL(), chatRequest{Model: "m", Stream: true, Messages: []msg{user("hi")}}, nil)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			s := readStream(t, resp.Body, nil)
			if !errors.Is(s.err, io.ErrUnexpectedEOF) {
				t.Errorf("read error %v, want unexpected EOF", s.err)
			}
			if want := min(after, 10); len(s.contents) != want || s.done || s.finish != "" {
				t.Errorf("%d tokens (want %d), done %v, finish %q", len(s.contents), want, s.done, s.finish)
			}
			if err := r.Server().WaitActive(within(t, time.Second), 0); err != nil {
				t.Fatal(err)
			}
			if n := r.Server().Canceled(); n != 0 {
				t.Errorf("a cut counted as canceled: %d", n)
			}
		})
	}

	t.Run("tool arguments", func(t *testing.T) {
		r := start(t, fast(sim.Options{Fault: sim.FaultCut, FaultAfter: 2}))
		body := chatRequest{Model: "m", Stream: true, Tools: []tool{fnTool("current_time", timeParams)}, Messages: []msg{user("current_time?")}}
		s := readStream(t, post(t, context.Background(), r.URL(), body, nil).Body, nil)
		if !errors.Is(s.err, io.ErrUnexpectedEOF) || len(s.calls) != 1 || s.calls[0].Function.Arguments != timeArgs[:8] {
			t.Errorf("err %v, calls %+v", s.err, s.calls)
		}
	})

	t.Run("not streamed", func(t *testing.T) {
		r := start(t, fast(sim.Options{Fault: sim.FaultCut}))
		resp := post(t, context.Background(), r.URL(), chatRequest{Model: "m", Messages: []msg{user("hi")}}, nil)
		data, err := io.ReadAll(resp.Body)
		if !errors.Is(err, io.ErrUnexpectedEOF) || len(data) == 0 {
			t.Errorf("read %q, %v", data, err)
		}
	})
}

func TestStall(t *testing.T) {
	r := start(t, fast(sim.Options{Tokens: 10, Fault: sim.FaultStall, FaultAfter: 2}))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resp := post(t, ctx, r.URL(), chatRequest{Model: "m", Stream: true, Messages: []msg{user("hi")}}, nil)
	got := make(chan *stream, 1)
	go func() {
		got <- readStream(t, resp.Body, nil)
	}()
	select {
	case s := <-got:
		t.Fatalf("stream ended during a stall: %+v", s)
	case <-time.After(200 * time.Millisecond):
	}
	if n := r.Server().Active(); n != 1 {
		t.Errorf("Active %d during the stall", n)
	}
	cancel()
	s := <-got
	if len(s.contents) != 2 || s.done || s.err == nil {
		t.Errorf("tokens %q, done %v, err %v", s.contents, s.done, s.err)
	}
	if err := r.Server().WaitActive(within(t, time.Second), 0); err != nil {
		t.Fatalf("the simulator did not see the request end: %v", err)
	}
	if n := r.Server().Canceled(); n != 1 {
		t.Errorf("Canceled %d", n)
	}
}

// A client that goes away mid-reply (during the pace, or before the first
// token, streamed or not) ends the request on the server within a second.
func TestClientGoesAway(t *testing.T) {
	for _, tc := range []struct {
		name   string
		opts   sim.Options
		stream bool
		read   int // tokens to read before going away
	}{
		{"during pace", sim.Options{Pace: time.Hour, TTFT: -1}, true, 1},
		{"before first token", sim.Options{TTFT: time.Hour}, true, 0},
		{"not streamed", sim.Options{TTFT: time.Hour}, false, 0},
		{"stalled, not streamed", fast(sim.Options{Fault: sim.FaultStall}), false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := start(t, tc.opts)
			ctx, cancel := context.WithCancel(context.Background())
			go func() {
				if err := r.Server().WaitActive(ctx, 1); err == nil && tc.read == 0 {
					cancel()
				}
			}()
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, r.URL()+"/chat/completions",
				strings.NewReader(`{"model":"m","stream":`+fmt.Sprint(tc.stream)+`,"messages":[{"role":"user","content":"hi"}]}`))
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				readStream(t, resp.Body, func(s *stream) bool { return len(s.contents) >= tc.read })
				cancel()
				resp.Body.Close()
			}
			if err := r.Server().WaitCanceled(within(t, time.Second), 1); err != nil {
				t.Fatalf("the simulator did not see the request closed: %v", err)
			}
			if err := r.Server().WaitActive(within(t, time.Second), 0); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestPaceAndTTFT(t *testing.T) {
	r := start(t, sim.Options{Tokens: 6, Pace: 20 * time.Millisecond, TTFT: 100 * time.Millisecond})
	for _, streamed := range []bool{true, false} {
		begin := time.Now()
		resp := post(t, context.Background(), r.URL(), chatRequest{Model: "m", Stream: streamed, Messages: []msg{user("hi")}}, nil)
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(begin); d < 200*time.Millisecond || d > 2*time.Second {
			t.Errorf("stream %v: took %v, want about 100ms + 5×20ms", streamed, d)
		}
	}
}

func TestHeaders(t *testing.T) {
	r := start(t, sim.Options{Pace: time.Hour, TTFT: time.Hour, Tokens: 50})
	fastHeaders := map[string]string{sim.HeaderPace: "0s", sim.HeaderTTFT: "0"}
	with := func(h map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range fastHeaders {
			m[k] = v
		}
		for k, v := range h {
			m[k] = v
		}
		return m
	}
	body := chatRequest{Model: "m", Stream: true, Messages: []msg{user("hi")}}

	s := readStream(t, post(t, within(t, 5*time.Second), r.URL(), body, with(map[string]string{sim.HeaderTokens: "3"})).Body, nil)
	if s.err != nil || s.contentJoined != sim.DefaultText(3) {
		t.Errorf("tokens header: %q, %v", s.contentJoined, s.err)
	}

	resp := post(t, within(t, 5*time.Second), r.URL(), body, with(map[string]string{sim.HeaderFault: "500"}))
	if resp.StatusCode != 500 {
		t.Errorf("fault header: status %d", resp.StatusCode)
	}

	s = readStream(t, post(t, within(t, 5*time.Second), r.URL(), body, with(map[string]string{sim.HeaderFault: "cut", sim.HeaderFaultAfter: "4"})).Body, nil)
	if !errors.Is(s.err, io.ErrUnexpectedEOF) || len(s.contents) != 4 {
		t.Errorf("cut header: %d tokens, %v", len(s.contents), s.err)
	}

	faulty := start(t, fast(sim.Options{Fault: sim.Fault500}))
	if resp := post(t, context.Background(), faulty.URL(), body, map[string]string{sim.HeaderFault: "none"}); resp.StatusCode != 200 {
		t.Errorf("fault none header: status %d", resp.StatusCode)
	}

	for _, tc := range []struct{ header, value string }{
		{sim.HeaderTokens, "zero"},
		{sim.HeaderTokens, "0"},
		{sim.HeaderPace, "fast"},
		{sim.HeaderPace, "-1s"},
		{sim.HeaderTTFT, "10"},
		{sim.HeaderFault, "explode"},
		{sim.HeaderFault, "200"},
		{sim.HeaderFaultAfter, "-1"},
	} {
		resp := post(t, context.Background(), r.URL(), body, map[string]string{tc.header: tc.value})
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: %q: status %d", tc.header, tc.value, resp.StatusCode)
			continue
		}
		if msg, typ, _ := errorBody(t, resp); !strings.Contains(msg, tc.header) || typ != "invalid_request_error" {
			t.Errorf("%s: %q: error %q", tc.header, tc.value, msg)
		}
	}
}

func TestValidation(t *testing.T) {
	r := start(t, fast(sim.Options{}))
	lenient := start(t, fast(sim.Options{Lenient: true}))
	call := func(id string) toolCall { return toolCall{ID: id, Type: "function", Function: function{"f", "{}"}} }
	for _, tc := range []struct {
		name      string
		body      any
		want      string // in the message
		lenientOK bool
	}{
		{"malformed JSON", `{"model": "m", "messages": [`, "not valid JSON", false},
		{"not an object", `[1, 2]`, "JSON object", false},
		{"wrong type", `{"model": "m", "messages": "hi"}`, "messages", false},
		{"bad content", `{"model": "m", "messages": [{"role": "user", "content": 5}]}`, "content", false},
		{"no messages", `{"model": "m", "messages": []}`, "messages", false},
		{"missing messages", `{"model": "m"}`, "messages", false},
		{"no model", chatRequest{Messages: []msg{user("hi")}}, "model", false},
		{"unknown role", chatRequest{Model: "m", Messages: []msg{{Role: "robot", Content: "hi"}}}, "robot", true},
		{"orphan tool message", chatRequest{Model: "m", Messages: []msg{user("hi"), {Role: "tool", ToolCallID: "call_1", Content: "x"}}}, "tool", true},
		{"tool message without id", chatRequest{Model: "m", Messages: []msg{user("hi"), {Role: "assistant", ToolCalls: []toolCall{call("c1")}}, {Role: "tool", Content: "x"}}}, "tool_call_id", true},
		{"unanswered tool call", chatRequest{Model: "m", Messages: []msg{user("hi"), {Role: "assistant", ToolCalls: []toolCall{call("c1"), call("c2")}}, {Role: "tool", ToolCallID: "c1", Content: "x"}, user("and?")}}, "c2", true},
		{"trailing tool calls", chatRequest{Model: "m", Messages: []msg{user("hi"), {Role: "assistant", ToolCalls: []toolCall{call("c1")}}}}, "c1", true},
		{"bad tool name", chatRequest{Model: "m", Messages: []msg{user("hi")}, Tools: []tool{fnTool("no spaces allowed", `{}`)}}, "name", true},
		{"temperature", `{"model": "m", "temperature": 3, "messages": [{"role": "user", "content": "hi"}]}`, "temperature", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := post(t, context.Background(), r.URL(), tc.body, nil)
			if resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if msg, typ, _ := errorBody(t, resp); !strings.Contains(msg, tc.want) || typ != "invalid_request_error" {
				t.Errorf("error %q (%s), want it to mention %q", msg, typ, tc.want)
			}
			resp = post(t, context.Background(), lenient.URL(), tc.body, nil)
			if ok := resp.StatusCode == http.StatusOK; ok != tc.lenientOK {
				t.Errorf("lenient: status %d", resp.StatusCode)
			}
		})
	}
	if n := len(r.Server().Requests()); n != 0 {
		t.Errorf("%d invalid requests recorded", n)
	}

	t.Run("content parts and a valid tool exchange", func(t *testing.T) {
		body := `{"model": "m", "messages": [
			{"role": "developer", "content": [{"type": "text", "text": "be "}, {"type": "text", "text": "brief"}]},
			{"role": "user", "content": "hi"},
			{"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
			{"role": "tool", "tool_call_id": "c1", "content": "done"}
		]}`
		resp := post(t, context.Background(), r.URL(), body, nil)
		if resp.StatusCode != http.StatusOK {
			msg, _, _ := errorBody(t, resp)
			t.Fatalf("status %d: %s", resp.StatusCode, msg)
		}
		reqs := r.Server().Requests()
		if got := reqs[len(reqs)-1].Messages[0].Content; got != "be brief" {
			t.Errorf("content parts read as %q", got)
		}
	})
}

func TestRoutes(t *testing.T) {
	r := start(t, fast(sim.Options{Models: []string{"gpt-4o-mini"}}))
	resp, err := http.Get(r.URL() + "/models")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list struct {
		Object string `json:"object"`
		Data   []struct {
			ID, Object, OwnedBy string
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatal(err)
	}
	if list.Object != "list" || len(list.Data) != 2 || list.Data[0].ID != "sim" || list.Data[1].ID != "gpt-4o-mini" || list.Data[0].Object != "model" {
		t.Errorf("models %+v", list)
	}

	for _, tc := range []struct {
		method, path string
		status       int
	}{
		{"GET", "/v1/nothing", 404},
		{"POST", "/", 404},
		{"GET", "/v1/chat/completions", 405},
		{"POST", "/v1/models", 405},
	} {
		req, _ := http.NewRequest(tc.method, "http://"+r.Addr()+tc.path, strings.NewReader("{}"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != tc.status {
			t.Errorf("%s %s: status %d", tc.method, tc.path, resp.StatusCode)
		}
		errorBody(t, resp)
		resp.Body.Close()
	}
}

func TestRequests(t *testing.T) {
	r := start(t, fast(sim.Options{}))
	temp := 0.5
	body := fmt.Sprintf(`{"model": "m", "temperature": %v, "stream": true, "stream_options": {"include_usage": true},
		"messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": "what is the current_time?"}],
		"tools": [{"type": "function", "function": {"name": "current_time", "description": "now", "parameters": {"type": "object"}}}]}`, temp)
	s := readStream(t, post(t, context.Background(), r.URL(), body, map[string]string{"X-Trace": "abc"}).Body, nil)
	if len(s.calls) != 1 {
		t.Fatalf("calls %+v", s.calls)
	}
	id := s.calls[0].ID
	body2 := chatRequest{Model: "m2", Messages: []msg{
		user("what is the current_time?"),
		{Role: "assistant", ToolCalls: []toolCall{{ID: id, Type: "function", Function: function{"current_time", "{}"}}}},
		{Role: "tool", ToolCallID: id, Content: "noon"},
	}}
	post(t, context.Background(), r.URL(), body2, nil)

	reqs := r.Server().Requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests", len(reqs))
	}
	q := reqs[0]
	if q.Model != "m" || !q.Stream || !q.IncludeUsage || q.Temperature == nil || *q.Temperature != temp || q.Header.Get("X-Trace") != "abc" {
		t.Errorf("request %+v", q)
	}
	if len(q.Messages) != 2 || q.Messages[0].Role != "system" || q.Messages[1].Content != "what is the current_time?" {
		t.Errorf("messages %+v", q.Messages)
	}
	if len(q.Tools) != 1 || q.Tools[0].Name != "current_time" || q.Tools[0].Description != "now" || string(q.Tools[0].Parameters) != `{"type": "object"}` {
		t.Errorf("tools %+v", q.Tools)
	}
	q = reqs[1]
	if q.Model != "m2" || q.Stream || len(q.Messages) != 3 || q.Messages[1].ToolCalls[0] != (sim.ToolCall{ID: id, Name: "current_time", Arguments: "{}"}) ||
		q.Messages[2].ToolCallID != id || q.Messages[2].Content != "noon" {
		t.Errorf("request %+v", q)
	}

	r.Server().Reset()
	if n := len(r.Server().Requests()); n != 0 {
		t.Errorf("%d requests after Reset", n)
	}

	r.Server().SetOptions(fast(sim.Options{Record: 2}))
	for i := range 5 {
		post(t, context.Background(), r.URL(), chatRequest{Model: fmt.Sprint(i), Messages: []msg{user("hi")}}, nil)
	}
	if reqs := r.Server().Requests(); len(reqs) != 2 || reqs[0].Model != "3" || reqs[1].Model != "4" {
		t.Errorf("Record 2 kept %+v", reqs)
	}
}

// Many concurrent streams each get the whole reply.
func TestConcurrent(t *testing.T) {
	r := start(t, sim.Options{Tokens: 30, Pace: time.Millisecond, TTFT: -1})
	const n = 100
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			body := fmt.Sprintf(`{"model": "m", "stream": %v, "messages": [{"role": "user", "content": "hi"}]}`, i%4 != 0)
			resp, err := http.Post(r.URL()+"/chat/completions", "application/json", strings.NewReader(body))
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			data, err := io.ReadAll(resp.Body)
			if err != nil {
				errs <- err
				return
			}
			if i%4 != 0 && !strings.HasSuffix(string(data), "data: [DONE]\n\n") {
				errs <- fmt.Errorf("stream %d ends %q", i, data[max(len(data)-40, 0):])
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := len(r.Server().Requests()); got != n {
		t.Errorf("%d requests recorded", got)
	}
}

// Close ends stalled requests and returns promptly.
func TestCloseEndsStalls(t *testing.T) {
	r, err := sim.Start("127.0.0.1:0", fast(sim.Options{Fault: sim.FaultStall}))
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		go func() {
			resp, err := http.Post(r.URL()+"/chat/completions", "application/json",
				strings.NewReader(`{"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]}`))
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	if err := r.Server().WaitActive(within(t, 5*time.Second), 3); err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(begin); d > time.Second {
		t.Errorf("Close took %v", d)
	}
	if n := r.Server().Active(); n != 0 {
		t.Errorf("Active %d after Close", n)
	}
}

func TestStartInvalid(t *testing.T) {
	if _, err := sim.Start("127.0.0.1:0", sim.Options{Fault: "explode"}); err == nil {
		t.Error("Start accepted an unknown fault")
	}
	defer func() {
		if recover() == nil {
			t.Error("New accepted an unknown fault")
		}
	}()
	sim.New(sim.Options{Fault: "200"})
}

// BenchmarkStream measures whole streamed replies of 100 tokens over HTTP.
func BenchmarkStream(b *testing.B) {
	r, err := sim.Start("127.0.0.1:0", sim.Options{Tokens: 100, Pace: -1, TTFT: -1, Record: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	body := `{"model": "m", "stream": true, "stream_options": {"include_usage": true}, "messages": [{"role": "user", "content": "hi"}]}`
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := http.Post(r.URL()+"/chat/completions", "application/json", strings.NewReader(body))
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
}
