package server_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/config"
	"github.com/agentstream/agentstream/internal/sse"
	"github.com/agentstream/agentstream/sim"
)

// openAIClient is OpenAI's official Go client pointed at e.
func openAIClient(e *env, opts ...option.RequestOption) openai.Client {
	return openai.NewClient(append([]option.RequestOption{
		option.WithBaseURL(e.url + "/v1/"), option.WithAPIKey("unused"), option.WithMaxRetries(0),
	}, opts...)...)
}

// TestOpenAIGoStreaming: openai-go streams a chat completion with usage
// from an agent that calls a tool: the first chunk has the assistant's
// role, the text is the stored answer, the last choice says stop, the
// usage chunk comes; the earlier messages of the request are stored on
// the new thread before the input, and the model saw them.
func TestOpenAIGoStreaming(t *testing.T) {
	t.Parallel()
	e := start(t, sim.Options{}, nil)
	client := openAIClient(e)
	var resp *http.Response
	stream := client.Chat.Completions.NewStreaming(streamCtx(t), openai.ChatCompletionNewParams{
		Model: "tester",
		Messages: []openai.ChatCompletionMessageParamUnion{
			openai.SystemMessage("ignored: the agent's instructions are its own"),
			openai.UserMessage("My name is Ada."),
			openai.AssistantMessage("Hello Ada."),
			openai.UserMessage("Work out the due_date, please."),
		},
		StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
	}, option.WithResponseInto(&resp))
	var acc openai.ChatCompletionAccumulator
	var chunks []openai.ChatCompletionChunk
	for stream.Next() {
		c := stream.Current()
		chunks = append(chunks, c)
		acc.AddChunk(c)
	}
	if err := stream.Err(); err != nil {
		t.Fatalf("stream: %v", err)
	}
	if len(chunks) < 3 || chunks[0].Choices[0].Delta.Role != "assistant" {
		t.Fatalf("chunks %+v", chunks)
	}
	last := chunks[len(chunks)-1]
	if len(last.Choices) != 0 || last.Usage.TotalTokens == 0 || last.Usage.TotalTokens != last.Usage.PromptTokens+last.Usage.CompletionTokens {
		t.Fatalf("last chunk %+v: want the usage chunk", last)
	}
	if fr := chunks[len(chunks)-2].Choices[0].FinishReason; fr != "stop" {
		t.Fatalf("finish_reason %q", fr)
	}
	for _, c := range chunks {
		if c.ID != "chatcmpl-"+resp.Header.Get("X-Run-Id") || c.Model != "tester" || c.Object != "chat.completion.chunk" {
			t.Fatalf("chunk %+v of run %s", c, resp.Header.Get("X-Run-Id"))
		}
		if len(c.Choices) > 0 && len(c.Choices[0].Delta.ToolCalls) > 0 {
			t.Fatalf("a tool call reached the client: %+v", c)
		}
	}
	msgs := e.messages(resp.Header.Get("X-Thread-Id"))
	var roles []string
	for _, m := range msgs {
		roles = append(roles, string(m.Role))
	}
	if got := strings.Join(roles, ","); got != "user,assistant,user,assistant,tool,assistant" {
		t.Fatalf("stored roles %s", got)
	}
	if msgs[0].Content != "My name is Ada." || msgs[1].Content != "Hello Ada." || msgs[2].Content != "Work out the due_date, please." {
		t.Fatalf("stored %+v", msgs[:3])
	}
	if msgs[4].ToolName != "due_date" {
		t.Fatalf("tool message %+v", msgs[4])
	}
	if answer := msgs[5].Content; answer == "" || acc.Choices[0].Message.Content != answer {
		t.Fatalf("streamed %q, stored %q", acc.Choices[0].Message.Content, answer)
	}
	first := e.sim.Requests()[0].Messages
	var seen []string
	for _, m := range first {
		seen = append(seen, m.Role+":"+m.Content)
	}
	if got := strings.Join(seen[1:], "|"); got != "user:My name is Ada.|assistant:Hello Ada.|user:Work out the due_date, please." {
		t.Fatalf("the model saw %q", seen)
	}
}

// TestOpenAIGoWhole: a chat completion not streamed is the whole answer,
// with usage; bound to a thread by X-Thread-Id, a second request adds
// only its last message to the thread (the rest of its messages are the
// thread's already); the run resumes as chunks from any event id.
func TestOpenAIGoWhole(t *testing.T) {
	t.Parallel()
	e := start(t, sim.Options{}, nil)
	client := openAIClient(e, option.WithHeader("X-Thread-Id", "conv-1"))
	params := openai.ChatCompletionNewParams{
		Model:    "tester",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Hi there.")},
	}
	var resp *http.Response
	c, err := client.Chat.Completions.New(streamCtx(t), params, option.WithResponseInto(&resp))
	if err != nil {
		t.Fatal(err)
	}
	if c.Object != "chat.completion" || len(c.Choices) != 1 || c.Choices[0].FinishReason != "stop" || c.Choices[0].Message.Role != "assistant" ||
		c.Usage.TotalTokens == 0 || resp.Header.Get("X-Thread-Id") != "conv-1" {
		t.Fatalf("completion %+v, headers %v", c, resp.Header)
	}
	msgs := e.messages("conv-1")
	if len(msgs) != 2 || msgs[1].Content != c.Choices[0].Message.Content || c.Choices[0].Message.Content == "" {
		t.Fatalf("answer %q, thread %+v", c.Choices[0].Message.Content, msgs)
	}
	params.Messages = append(params.Messages, openai.AssistantMessage("edited by the client"), openai.UserMessage("And again."))
	if _, err := client.Chat.Completions.New(streamCtx(t), params); err != nil {
		t.Fatal(err)
	}
	msgs = e.messages("conv-1")
	if len(msgs) != 4 || msgs[1].Content == "edited by the client" || msgs[2].Content != "And again." {
		t.Fatalf("thread %+v", msgs)
	}

	// The first run, resumed as chunks after each of its events, gives
	// the rest of the same stream; at its end, 204.
	runID := resp.Header.Get("X-Run-Id")
	whole := readFormat(t, e, runID, "openai", "")
	if whole[len(whole)-1].Data != "[DONE]" {
		t.Fatalf("stream %+v", whole)
	}
	lastID := ""
	for _, ev := range whole {
		if ev.ID != "" {
			lastID = ev.ID
		}
	}
	for i, ev := range whole {
		switch ev.ID {
		case "":
		case lastID: // the terminal event's
			if st := e.status("GET", "/v1/runs/"+runID+"/events?format=openai", map[string]string{"Last-Event-ID": ev.ID}); st != http.StatusNoContent {
				t.Fatalf("after the end, %s: %d", ev.ID, st)
			}
		default:
			sameEvents(t, "resumed after "+ev.ID, readFormat(t, e, runID, "openai", ev.ID), whole[i+1:])
		}
	}
}

// readFormat reads a run's events in format after lastEventID.
func readFormat(t testing.TB, e *env, runID, format, lastEventID string) []sse.Event {
	t.Helper()
	header := map[string]string{}
	if lastEventID != "" {
		header["Last-Event-ID"] = lastEventID
	}
	r, _ := e.openStream(streamCtx(t), "GET", "/v1/runs/"+runID+"/events?format="+format, "", header)
	return readToEnd(t, r)
}

// TestOpenAIGoErrors: errors come in OpenAI's shape and statuses, so
// openai-go returns its *openai.Error with the status and type: an
// unknown model (404), client-side tools (400), a bad key (401); and
// GET /v1/models lists the agents.
func TestOpenAIGoErrors(t *testing.T) {
	t.Parallel()
	e := start(t, sim.Options{}, func(c *config.Config) { c.Auth.Keys = []config.APIKey{{Key: testKey, User: "u1"}} })
	ctx := streamCtx(t)
	good := openAIClient(e, option.WithAPIKey(testKey))
	models, err := good.Models.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range models.Data {
		names = append(names, m.ID)
	}
	if !strings.Contains(","+strings.Join(names, ",")+",", ",tester,") {
		t.Fatalf("models %v", names)
	}
	hi := []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}
	for _, tt := range []struct {
		name   string
		client openai.Client
		params openai.ChatCompletionNewParams
		status int
		typ    string
	}{
		{"unknown model", good, openai.ChatCompletionNewParams{Model: "gpt-nope", Messages: hi}, 404, "invalid_request_error"},
		{"client tools", good, openai.ChatCompletionNewParams{Model: "tester", Messages: hi, Tools: []openai.ChatCompletionToolUnionParam{
			openai.ChatCompletionFunctionTool(openai.FunctionDefinitionParam{Name: "mine"}),
		}}, 400, "invalid_request_error"},
		{"last message not the user's", good, openai.ChatCompletionNewParams{Model: "tester", Messages: []openai.ChatCompletionMessageParamUnion{openai.AssistantMessage("x")}}, 400, "invalid_request_error"},
		{"bad key", openAIClient(e, option.WithAPIKey("wrong")), openai.ChatCompletionNewParams{Model: "tester", Messages: hi}, 401, "authentication_error"},
	} {
		_, err := tt.client.Chat.Completions.New(ctx, tt.params)
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != tt.status || apiErr.Type != tt.typ || apiErr.Message == "" {
			t.Errorf("%s: %v (%#v), want %d %s", tt.name, err, apiErr, tt.status, tt.typ)
		}
	}
	// Nothing was stored for the refused requests.
	resp := e.request("GET", "/v1/threads", "", map[string]string{"Authorization": "Bearer " + testKey})
	defer func() { _ = resp.Body.Close() }()
	var page struct{ Data []agentstream.Thread }
	if err := json.NewDecoder(resp.Body).Decode(&page); err != nil || resp.StatusCode != http.StatusOK || len(page.Data) != 0 {
		t.Fatalf("threads: %d %+v %v", resp.StatusCode, page.Data, err)
	}
}
