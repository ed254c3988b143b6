package openai

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/internal/cpustat"
	oai "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/packages/param"
)

func TestFunctionParameters(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		schema, want, err string
	}{
		{"", `{"type":"object","properties":{}}`, ""},
		{"null", `{"type":"object","properties":{}}`, ""},
		{"  null \n", `{"type":"object","properties":{}}`, ""},
		{`{}`, `{}`, ""},
		{` {"type":"object","properties":{"n":{"type":"number","maximum":1e400}}} `, `{"type":"object","properties":{"n":{"type":"number","maximum":1e400}}}`, ""},
		{`[]`, "", "must be a JSON object"},
		{`"object"`, "", "must be a JSON object"},
		{`{"type":`, "", "not valid JSON"},
		{`{} {}`, "", "not valid JSON"},
	} {
		got, err := functionParameters(json.RawMessage(tc.schema))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("functionParameters(%q) = %s, %v; want error %q", tc.schema, got, err, tc.err)
			}
			continue
		}
		if err != nil || string(got) != tc.want {
			t.Errorf("functionParameters(%q) = %s, %v; want %s", tc.schema, got, err, tc.want)
		}
	}
}

func TestRequestBodyErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		req  agentstream.ModelRequest
		want string
	}{
		{"no model", agentstream.ModelRequest{Messages: []agentstream.Message{{Role: agentstream.RoleUser, Content: "hi"}}}, "no model name"},
		{"bad role", agentstream.ModelRequest{Model: "m", Messages: []agentstream.Message{{Role: "robot", Content: "hi"}}}, `role "robot"`},
		{"temperature NaN", agentstream.ModelRequest{Model: "m", Temperature: ptr(math.NaN()),
			Messages: []agentstream.Message{{Role: agentstream.RoleUser, Content: "hi"}}}, "cannot be encoded"},
		{"bad schema", agentstream.ModelRequest{Model: "m", Messages: []agentstream.Message{{Role: agentstream.RoleUser, Content: "hi"}},
			Tools: []agentstream.ToolSpec{{Name: "t", Parameters: json.RawMessage(`[1]`)}}}, "tool t has an invalid parameters schema"},
	} {
		_, err := requestBody(tc.req)
		var de *agentstream.Error
		if !errors.As(err, &de) || de.Code != agentstream.CodeInternal || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want CodeInternal containing %q", tc.name, err, tc.want)
		}
	}
}

func ptr[T any](v T) *T { return &v }

// TestRequestBodyZeroValues checks values that omitempty could drop: a
// temperature of 0 and empty contents are sent.
func TestRequestBodyZeroValues(t *testing.T) {
	t.Parallel()
	body, err := requestBody(agentstream.ModelRequest{Model: "m", Temperature: ptr(0.0), Messages: []agentstream.Message{
		{Role: agentstream.RoleSystem}, {Role: agentstream.RoleUser}, {Role: agentstream.RoleTool, ToolCallID: "c1"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"model":"m","messages":[{"role":"system","content":""},{"role":"user","content":""},{"role":"tool","content":"","tool_call_id":"c1"}],"temperature":0,"stream":true,"stream_options":{"include_usage":true}}`
	if string(body) != want {
		t.Errorf("body\n got %s\nwant %s", body, want)
	}
}

// benchRequest is a short conversation: a system prompt, two earlier
// turns and the question.
func benchRequest() agentstream.ModelRequest {
	return agentstream.ModelRequest{Model: "gpt-4o-mini", Messages: []agentstream.Message{
		{Role: agentstream.RoleSystem, Content: "You are a helpful assistant. Answer briefly."},
		{Role: agentstream.RoleUser, Content: "Hello! How are you today?"},
		{Role: agentstream.RoleAssistant, Content: "I am well, thank you. How can I help?"},
		{Role: agentstream.RoleUser, Content: "What is the capital of France?"},
		{Role: agentstream.RoleAssistant, Content: "Paris."},
		{Role: agentstream.RoleUser, Content: "And of Italy?"},
	}}
}

// BenchmarkRequestBody compares the body built here with the same body
// built through openai-go's parameter types, as Stream did before.
// "fresh-goroutine" builds each body on a new goroutine, as each run's
// goroutine does (its stack starts small: what the encoding's depth grows
// it by is paid on every run); "history-340" is a thread of 340 messages.
// cpu-ns/op is the process's CPU time (getrusage) per body.
func BenchmarkRequestBody(b *testing.B) {
	req := benchRequest()
	b.Run("here", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := requestBody(req); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("fresh-goroutine", func(b *testing.B) {
		b.ReportAllocs()
		cpu := cpustat.Of(b)
		for b.Loop() {
			done := make(chan error)
			go func() {
				_, err := requestBody(req)
				done <- err
			}()
			if err := <-done; err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64((cpustat.Of(b)-cpu).Nanoseconds())/float64(b.N), "cpu-ns/op")
	})
	b.Run("history-340", func(b *testing.B) {
		long := agentstream.ModelRequest{Model: req.Model, Messages: []agentstream.Message{req.Messages[0]}}
		for i := range 340 {
			long.Messages = append(long.Messages, agentstream.Message{Role: []agentstream.Role{agentstream.RoleUser, agentstream.RoleAssistant}[i%2],
				Content: fmt.Sprintf("message %d of a long conversation, with a few more words in it", i)})
		}
		b.ReportAllocs()
		cpu := cpustat.Of(b)
		for b.Loop() {
			if _, err := requestBody(long); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64((cpustat.Of(b)-cpu).Nanoseconds())/float64(b.N), "cpu-ns/op")
	})
	b.Run("openai-go", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			p := oai.ChatCompletionNewParams{Model: req.Model}
			p.StreamOptions.IncludeUsage = param.NewOpt(true)
			for _, m := range req.Messages {
				switch m.Role {
				case agentstream.RoleSystem:
					p.Messages = append(p.Messages, oai.SystemMessage(m.Content))
				case agentstream.RoleUser:
					p.Messages = append(p.Messages, oai.UserMessage(m.Content))
				default:
					p.Messages = append(p.Messages, oai.AssistantMessage(m.Content))
				}
			}
			if _, err := json.Marshal(p); err != nil {
				b.Fatal(err)
			}
		}
	})
}
