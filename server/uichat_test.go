package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/config"
	"github.com/agentstream/agentstream/internal/sse"
	"github.com/agentstream/agentstream/sim"
)

// uiBody is what useChat's DefaultChatTransport posts: the chat's id, the
// whole conversation (UIMessages), the trigger, and extra fields.
func uiBody(t testing.TB, chatID string, texts []string, extra map[string]any) string {
	t.Helper()
	var msgs []map[string]any
	for i, text := range texts {
		role := "user"
		if i%2 == 1 {
			role = "assistant"
		}
		msgs = append(msgs, map[string]any{"id": "m" + string(rune('a'+i)), "role": role,
			"parts": []map[string]any{{"type": "text", "text": text}}})
	}
	body := map[string]any{"id": chatID, "messages": msgs, "trigger": "submit-message", "messageId": nil}
	for k, v := range extra {
		body[k] = v
	}
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// uiChunks decodes a UI message stream's chunks, checking it ends with
// data: [DONE] once.
func uiChunks(t testing.TB, evs []sse.Event) []map[string]any {
	t.Helper()
	if len(evs) == 0 || evs[len(evs)-1].Data != "[DONE]" {
		t.Fatalf("the stream does not end with [DONE]: %v", evs)
	}
	var out []map[string]any
	for _, ev := range evs[:len(evs)-1] {
		var c map[string]any
		if err := json.Unmarshal([]byte(ev.Data), &c); err != nil || ev.Type != "message" {
			t.Fatalf("chunk %q (event %q): %v", ev.Data, ev.Type, err)
		}
		out = append(out, c)
	}
	return out
}

// uiAnswer is what the chunks of one run say: the text, the tool calls'
// inputs and outputs, and the order of the chunk types.
type uiAnswer struct {
	text    string
	inputs  map[string]any
	outputs map[string]any
	types   []string
}

func readUIAnswer(t testing.TB, chunks []map[string]any) uiAnswer {
	t.Helper()
	a := uiAnswer{inputs: map[string]any{}, outputs: map[string]any{}}
	for _, c := range chunks {
		typ, _ := c["type"].(string)
		a.types = append(a.types, typ)
		switch typ {
		case "text-delta":
			a.text += c["delta"].(string)
		case "tool-input-available":
			a.inputs[c["toolName"].(string)] = c["input"]
		case "tool-output-available":
			a.outputs[c["toolCallId"].(string)] = c["output"]
		}
	}
	return a
}

// TestUIChat: POST /api/chat as useChat sends it runs the agent on the
// thread the chat's id names (created on first use, this user's), with
// the last user message as the input, and answers with the UI message
// stream: the tool's call and result, the text, steps, finish, [DONE].
// The next message of the chat goes on the same thread; the history the
// client sends again is not stored twice.
func TestUIChat(t *testing.T) {
	t.Parallel()
	e := start(t, sim.Options{Tokens: 5}, nil)
	resp, evs := e.stream("POST", "/api/chat", uiBody(t, "chat-1", []string{"What is the current_time?"}, nil))
	if got := resp.Header.Get("X-Vercel-Ai-Ui-Message-Stream"); got != "v1" {
		t.Fatalf("x-vercel-ai-ui-message-stream %q", got)
	}
	if resp.Header.Get("X-Thread-Id") != "chat-1" || resp.Header.Get("X-Run-Id") == "" {
		t.Fatalf("X-Thread-Id %q, X-Run-Id %q", resp.Header.Get("X-Thread-Id"), resp.Header.Get("X-Run-Id"))
	}
	a := readUIAnswer(t, uiChunks(t, evs))
	types := strings.Join(a.types, " ")
	for _, want := range []string{"start start-step", "tool-input-start", "tool-input-available", "tool-output-available", "text-start", "text-end", "finish-step finish"} {
		if !strings.Contains(types, want) {
			t.Fatalf("chunks %s lack %q", types, want)
		}
	}
	if !strings.HasPrefix(types, "start ") || !strings.HasSuffix(types, " finish") || strings.Count(types, "start-step") != 2 {
		t.Fatalf("chunks %s", types)
	}
	if _, ok := a.inputs["current_time"]; !ok || len(a.outputs) != 1 {
		t.Fatalf("tool inputs %v, outputs %v", a.inputs, a.outputs)
	}
	msgs := e.messages("chat-1")
	if last := msgs[len(msgs)-1]; last.Content != a.text || a.text == "" {
		t.Fatalf("streamed text %q, stored %q", a.text, last.Content)
	}
	n := len(msgs)

	// The second message: the client sends the whole conversation; only
	// its last message is new.
	_, evs = e.stream("POST", "/api/chat", uiBody(t, "chat-1", []string{"What is the current_time?", a.text, "Thanks"}, nil))
	b := readUIAnswer(t, uiChunks(t, evs))
	msgs = e.messages("chat-1")
	if len(msgs) != n+2 || msgs[n].Role != agentstream.RoleUser || msgs[n].Content != "Thanks" || msgs[n+1].Content != b.text {
		t.Fatalf("after the second message, the thread holds %d messages (had %d): %+v", len(msgs), n, msgs[n:])
	}
}

// TestUIChatRefused: what agentstream cannot do yet, or a request that is
// not useChat's, is a 400 saying why, and nothing is created.
func TestUIChatRefused(t *testing.T) {
	t.Parallel()
	e := start(t, sim.Options{Tokens: 3}, nil)
	withParts := func(role string, parts ...map[string]any) string {
		b, _ := json.Marshal(map[string]any{"id": "chat-x", "trigger": "submit-message",
			"messages": []map[string]any{{"id": "m1", "role": role, "parts": parts}}})
		return string(b)
	}
	tests := []struct {
		name, body, want string
	}{
		{"regenerate", uiBody(t, "chat-x", []string{"hi"}, map[string]any{"trigger": "regenerate-message", "messageId": "m2"}), "regenerate-message"},
		{"unknown trigger", uiBody(t, "chat-x", []string{"hi"}, map[string]any{"trigger": "again"}), `"trigger"`},
		{"client tools", uiBody(t, "chat-x", []string{"hi"}, map[string]any{"tools": map[string]any{"weather": map[string]any{}}}), "client-side tools"},
		{"tool result from the client", withParts("assistant", map[string]any{"type": "tool-weather", "toolCallId": "c", "state": "output-available", "output": "sunny"}), "client-side tools"},
		{"no id", uiBody(t, "", []string{"hi"}, nil), `"id"`},
		{"no messages", uiBody(t, "chat-x", nil, nil), `"messages"`},
		{"a file", withParts("user", map[string]any{"type": "file", "mediaType": "image/png", "url": "data:,"}), `"file"`},
		{"no text", withParts("user", map[string]any{"type": "text", "text": "  "}), "no text"},
		{"bad id", uiBody(t, "a/b", []string{"hi"}, nil), "thread_id"},
		{"unknown field", uiBody(t, "chat-x", []string{"hi"}, map[string]any{"temperature": 1}), "temperature"},
		{"bad on_disconnect", uiBody(t, "chat-x", []string{"hi"}, map[string]any{"on_disconnect": "later"}), "on_disconnect"},
		{"unknown agent", uiBody(t, "chat-x", []string{"hi"}, map[string]any{"agent": "nobody"}), "nobody"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := e.do("POST", "/api/chat", tt.body)
			info := errorBody(t, resp)
			if resp.StatusCode != http.StatusBadRequest && !(tt.name == "unknown agent" && resp.StatusCode == http.StatusNotFound) {
				t.Fatalf("status %d: %+v", resp.StatusCode, info)
			}
			if !strings.Contains(info.Message, tt.want) {
				t.Fatalf("message %q does not name %s", info.Message, tt.want)
			}
		})
	}
	if got := e.status("GET", "/v1/threads/chat-x", nil); got != http.StatusNotFound {
		t.Fatalf("the refused requests made a thread: GET it is %d", got)
	}
}

// TestUIChatResume: GET /api/chat/{id}/stream (useChat's resume after a
// reload) answers 204 for a chat without a thread, and for one whose run
// has ended; while a run goes on, its whole stream from the start, as the
// request that started it got it, which ?format=ui of the events URL
// also gives, resumable from any event id.
func TestUIChatResume(t *testing.T) {
	t.Parallel()
	e := start(t, sim.Options{Tokens: 300, Pace: 5 * time.Millisecond}, nil)
	if got := e.status("GET", "/api/chat/chat-r/stream", nil); got != http.StatusNoContent {
		t.Fatalf("a chat without a thread: %d", got)
	}
	ctx, cancel := context.WithCancel(streamCtx(t))
	r, resp := e.openStream(ctx, "POST", "/api/chat", uiBody(t, "chat-r", []string{"hello"}, nil), nil)
	runID := resp.Header.Get("X-Run-Id")
	first := readN(t, r, 4)
	cancel() // the page is reloaded: the run goes on (on_disconnect continue)

	r2, resp2 := e.openStream(streamCtx(t), "GET", "/api/chat/chat-r/stream", "", nil)
	if resp2.Header.Get("X-Run-Id") != runID || resp2.Header.Get("X-Vercel-Ai-Ui-Message-Stream") != "v1" || resp2.Header.Get("X-Thread-Id") != "chat-r" {
		t.Fatalf("resumed stream headers %v, want run %s", resp2.Header, runID)
	}
	resumed := readToEnd(t, r2)
	sameEvents(t, "the resumed stream's start", resumed[:4], first)
	a := readUIAnswer(t, uiChunks(t, resumed))
	msgs := e.messages("chat-r")
	if last := msgs[len(msgs)-1]; last.Content != a.text {
		t.Fatalf("resumed text %.40q…, stored %.40q…", a.text, last.Content)
	}
	waitRunEnd(t, e, runID)
	if got := e.status("GET", "/api/chat/chat-r/stream", nil); got != http.StatusNoContent {
		t.Fatalf("a chat whose run ended: %d", got)
	}

	// ?format=ui: the same stream; from any id, the rest of it.
	whole := e.readUI(runID, "")
	sameEvents(t, "?format=ui", whole, resumed)
	for _, i := range []int{3, len(whole) / 2, len(whole) - 3} {
		id := whole[i].ID
		if id == "" {
			continue
		}
		rest := e.readUI(runID, id)
		sameEvents(t, "resumed after "+id, rest, whole[len(whole)-len(rest):])
		if len(rest) == 0 || len(rest) >= len(whole)-i {
			t.Fatalf("after id %s (event %d of %d): %d events", id, i, len(whole), len(rest))
		}
	}
}

func (e *env) readUI(runID, lastEventID string) []sse.Event {
	e.t.Helper()
	header := map[string]string{}
	if lastEventID != "" {
		header["Last-Event-ID"] = lastEventID
	}
	r, _ := e.openStream(streamCtx(e.t), "GET", "/v1/runs/"+runID+"/events?format=ui", "", header)
	return readToEnd(e.t, r)
}

// TestUIChatIsolation: a chat id is the user's own: another user with the
// same id gets a thread of theirs, and resuming sees only their runs; the
// endpoints need a key like /v1.
func TestUIChatIsolation(t *testing.T) {
	t.Parallel()
	e := start(t, sim.Options{Tokens: 3}, func(c *config.Config) {
		c.Auth.Keys = []config.APIKey{{Key: testKey, User: "u1"}, {Key: testKey + "2", User: "u2"}}
	})
	as := func(key string) map[string]string { return map[string]string{"Authorization": "Bearer " + key} }
	if resp := e.request("POST", "/api/chat", uiBody(t, "shared", []string{"hi"}, nil), nil); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("without a key: %d", resp.StatusCode)
	}
	if got := e.status("GET", "/api/chat/shared/stream", nil); got != http.StatusUnauthorized {
		t.Fatalf("resume without a key: %d", got)
	}
	texts := map[string]string{}
	for _, key := range []string{testKey, testKey + "2"} {
		resp := e.request("POST", "/api/chat", uiBody(t, "shared", []string{"hi from " + key[len(key)-1:]}, nil), as(key))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
		evs := readToEnd(t, sse.NewReader(resp.Body))
		texts[key] = readUIAnswer(t, uiChunks(t, evs)).text
	}
	for _, key := range []string{testKey, testKey + "2"} {
		var out struct {
			Data []agentstream.Message `json:"data"`
		}
		resp := e.request("GET", "/v1/threads/shared/messages", "", as(key))
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || len(out.Data) != 2 || !strings.HasSuffix(out.Data[0].Content, key[len(key)-1:]) {
			t.Fatalf("%s's thread: %v %+v", key, err, out.Data)
		}
	}
}
