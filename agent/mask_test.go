package agent

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/tools"
)

// TestMaskToolOutputs: Deps.Mask rewrites what tools answer, and their
// errors, before the stream, the store and the model's next turn see it.
func TestMaskToolOutputs(t *testing.T) {
	t.Parallel()
	const secret = "tok-123456"
	echo := tools.NewFunc("echo", "Echoes the token it was given.", `{"type":"object"}`, func(context.Context, json.RawMessage) (string, error) {
		return "you sent Bearer " + secret, nil
	})
	fail := tools.NewFunc("fail", "Fails, quoting the token.", `{"type":"object"}`, func(context.Context, json.RawMessage) (string, error) {
		return "", errors.New("token " + secret + " refused")
	})
	h := newHarness(t, setup{
		tools: []agentstream.Tool{echo, fail},
		mask:  tools.NewSecrets(secret).Mask,
		script: scripted(
			turn{calls: []fakeCall{{id: "c1", name: "echo", pieces: []string{"{}"}}, {id: "c2", name: "fail", pieces: []string{"{}"}}}},
			turn{text: []string{"done"}},
		),
	})
	th := h.thread(nil)
	run := h.start(th, "go")
	evs := h.events(run.ID)
	end(t, evs, agentstream.EventRunCompleted)
	results := 0
	for _, ev := range evs {
		if strings.Contains(string(ev.Data), secret) {
			t.Fatalf("event %s carries the secret: %s", ev.Type, ev.Data)
		}
		if ev.Type == agentstream.EventToolResult {
			results++
			if r := decode[agentstream.ToolResultData](t, ev); !strings.Contains(r.Output, tools.Redacted) {
				t.Fatalf("tool.result %+v is not masked", r)
			}
		}
	}
	if results != 2 {
		t.Fatalf("%d tool results, want 2", results)
	}
	for _, m := range h.messages(th.ID) {
		if strings.Contains(m.Content, secret) {
			t.Fatalf("stored message %+v carries the secret", m)
		}
	}
	msgs := h.model.requests()[1].Messages
	if got := msgs[len(msgs)-2].Content + msgs[len(msgs)-1].Content; strings.Contains(got, secret) || strings.Count(got, tools.Redacted) != 2 {
		t.Fatalf("the model was sent %q", got)
	}
}
