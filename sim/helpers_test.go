package sim_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/agentstream/agentstream/sim"
)

// fast are options for tests: no pace, no time to first token.
func fast(o sim.Options) sim.Options {
	if o.Pace == 0 {
		o.Pace = -1
	}
	if o.TTFT == 0 {
		o.TTFT = -1
	}
	return o
}

// start runs a simulator for the test.
func start(t *testing.T, o sim.Options) *sim.Running {
	t.Helper()
	r, err := sim.Start("127.0.0.1:0", o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return r
}

// msg and friends build request bodies as an OpenAI client sends them.
type (
	msg struct {
		Role       string     `json:"role"`
		Content    any        `json:"content,omitempty"`
		ToolCalls  []toolCall `json:"tool_calls,omitempty"`
		ToolCallID string     `json:"tool_call_id,omitempty"`
	}
	toolCall struct {
		ID       string   `json:"id"`
		Type     string   `json:"type"`
		Function function `json:"function"`
	}
	function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	}
	tool struct {
		Type     string  `json:"type"`
		Function toolDef `json:"function"`
	}
	toolDef struct {
		Name        string          `json:"name"`
		Description string          `json:"description,omitempty"`
		Parameters  json.RawMessage `json:"parameters,omitempty"`
	}
	chatRequest struct {
		Model         string         `json:"model"`
		Messages      []msg          `json:"messages"`
		Tools         []tool         `json:"tools,omitempty"`
		Stream        bool           `json:"stream,omitempty"`
		StreamOptions map[string]any `json:"stream_options,omitempty"`
	}
)

func user(text string) msg { return msg{Role: "user", Content: text} }

func fnTool(name, params string) tool {
	return tool{Type: "function", Function: toolDef{Name: name, Description: "the " + name + " tool", Parameters: json.RawMessage(params)}}
}

// post sends a chat request (a chatRequest, or a string sent verbatim).
func post(t *testing.T, ctx context.Context, base string, body any, header map[string]string) *http.Response {
	t.Helper()
	var data []byte
	switch b := body.(type) {
	case string:
		data = []byte(b)
	default:
		var err error
		if data, err = json.Marshal(b); err != nil {
			t.Fatal(err)
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/chat/completions", bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// The streamed chunk as a client decodes it.
type (
	chunk struct {
		ID      string        `json:"id"`
		Object  string        `json:"object"`
		Created int64         `json:"created"`
		Model   string        `json:"model"`
		Choices []chunkChoice `json:"choices"`
		Usage   *usage        `json:"usage"`
	}
	chunkChoice struct {
		Index        int     `json:"index"`
		Delta        delta   `json:"delta"`
		FinishReason *string `json:"finish_reason"`
	}
	delta struct {
		Role      string          `json:"role"`
		Content   *string         `json:"content"`
		ToolCalls []toolCallDelta `json:"tool_calls"`
	}
	toolCallDelta struct {
		Index    int      `json:"index"`
		ID       string   `json:"id"`
		Type     string   `json:"type"`
		Function function `json:"function"`
	}
	usage struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
		TotalTokens      int `json:"total_tokens"`
	}
)

// stream is a streamed reply read to its end.
type stream struct {
	chunks        []chunk
	contents      []string // the content of each content chunk, the role chunk's "" excepted
	calls         []toolCall
	argChunks     map[int]int // argument pieces per call index
	finish        string
	usage         *usage
	done          bool
	err           error // the read error, nil on a clean end
	afterDone     bool  // data after [DONE]
	roleFirst     bool
	contentJoined string
}

// readStream reads SSE chunks until the body ends, or until stop says so
// (then the body is left open).
func readStream(t *testing.T, body io.Reader, stop func(*stream) bool) *stream {
	t.Helper()
	s := &stream{argChunks: map[int]int{}}
	br := bufio.NewReader(body)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			if !errors.Is(err, io.EOF) || line != "" {
				s.err = err
			}
			break
		}
		line = strings.TrimRight(line, "\n")
		if line == "" {
			continue
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			t.Fatalf("line without data: %q", line)
		}
		if s.done {
			s.afterDone = true
		}
		if data == "[DONE]" {
			s.done = true
			continue
		}
		var c chunk
		if err := json.Unmarshal([]byte(data), &c); err != nil {
			t.Fatalf("chunk %q: %v", data, err)
		}
		if len(s.chunks) == 0 && len(c.Choices) == 1 && c.Choices[0].Delta.Role == "assistant" &&
			c.Choices[0].Delta.Content != nil && *c.Choices[0].Delta.Content == "" {
			s.roleFirst = true
		} else if len(c.Choices) == 1 && c.Choices[0].Delta.Content != nil {
			s.contents = append(s.contents, *c.Choices[0].Delta.Content)
			s.contentJoined += *c.Choices[0].Delta.Content
		}
		s.chunks = append(s.chunks, c)
		if c.Usage != nil {
			s.usage = c.Usage
		}
		for _, ch := range c.Choices {
			if ch.FinishReason != nil {
				s.finish = *ch.FinishReason
			}
			for _, d := range ch.Delta.ToolCalls {
				for len(s.calls) <= d.Index {
					s.calls = append(s.calls, toolCall{})
				}
				tc := &s.calls[d.Index]
				if d.ID != "" {
					tc.ID, tc.Type, tc.Function.Name = d.ID, d.Type, d.Function.Name
				}
				if d.Function.Arguments != "" {
					tc.Function.Arguments += d.Function.Arguments
					s.argChunks[d.Index]++
				}
			}
		}
		if stop != nil && stop(s) {
			break
		}
	}
	return s
}

// errorBody decodes an OpenAI-style error body.
func errorBody(t *testing.T, resp *http.Response) (message, typ, code string) {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("error Content-Type %q", ct)
	}
	var b struct {
		Error struct {
			Message string  `json:"message"`
			Type    string  `json:"type"`
			Code    *string `json:"code"`
		} `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&b); err != nil {
		t.Fatalf("error body: %v", err)
	}
	if b.Error.Message == "" {
		t.Errorf("error body without message")
	}
	if b.Error.Code != nil {
		code = *b.Error.Code
	}
	return b.Error.Message, b.Error.Type, code
}

// within returns a context that ends after d.
func within(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
