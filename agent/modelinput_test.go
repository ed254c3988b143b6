package agent

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/agentstream/agentstream"
)

func TestModelInput(t *testing.T) {
	t.Parallel()
	user := func(s string) agentstream.Message {
		return agentstream.Message{Role: agentstream.RoleUser, Content: s, Status: agentstream.MessageComplete}
	}
	assistant := func(s string, callIDs ...string) agentstream.Message {
		m := agentstream.Message{Role: agentstream.RoleAssistant, Content: s, Status: agentstream.MessageComplete}
		for _, id := range callIDs {
			m.ToolCalls = append(m.ToolCalls, agentstream.ToolCall{ID: id, Name: "t", Arguments: "{}"})
		}
		return m
	}
	tool := func(callID, out string) agentstream.Message {
		return agentstream.Message{Role: agentstream.RoleTool, Content: out, ToolCallID: callID, ToolName: "t", Status: agentstream.MessageComplete}
	}
	partial := func(s string) agentstream.Message {
		m := assistant(s)
		m.Status = agentstream.MessagePartial
		return m
	}

	tests := []struct {
		name    string
		system  string
		history []agentstream.Message
		want    []string
	}{
		{
			name:    "system first",
			system:  "S",
			history: []agentstream.Message{user("hi"), assistant("hello")},
			want:    []string{"system S", "user hi", "assistant hello"},
		},
		{
			name:    "no system message without instructions",
			history: []agentstream.Message{user("hi")},
			want:    []string{"user hi"},
		},
		{
			name:    "answered calls kept",
			system:  "S",
			history: []agentstream.Message{user("q"), assistant("", "c1", "c2"), tool("c1", "r1"), tool("c2", "r2"), assistant("a")},
			want:    []string{"system S", "user q", "assistant  calls=c1,c2", "tool r1 for=c1", "tool r2 for=c2", "assistant a"},
		},
		{
			name:    "a call without result is dropped from its message",
			history: []agentstream.Message{user("q"), assistant("let me see", "c1", "c2"), tool("c2", "r2"), assistant("a")},
			want:    []string{"user q", "assistant let me see calls=c2", "tool r2 for=c2", "assistant a"},
		},
		{
			name:    "an assistant message left with nothing is dropped",
			history: []agentstream.Message{user("q"), assistant("", "c1"), user("again")},
			want:    []string{"user q", "user again"},
		},
		{
			name:    "an empty assistant message is dropped",
			history: []agentstream.Message{user("q"), assistant(""), user("again")},
			want:    []string{"user q", "user again"},
		},
		{
			name:    "a result whose call is missing is dropped",
			history: []agentstream.Message{user("q"), tool("c9", "orphan"), assistant("a")},
			want:    []string{"user q", "assistant a"},
		},
		{
			name:    "a partial message is kept as text",
			history: []agentstream.Message{user("q"), partial("half an ans"), user("go on")},
			want:    []string{"user q", "assistant half an ans", "user go on"},
		},
		{
			name:    "empty history",
			system:  "S",
			history: nil,
			want:    []string{"system S"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			before := deepCopy(tt.history)
			got := modelInput(tt.system, tt.history, 0)
			if g := describe(got); !reflect.DeepEqual(g, tt.want) {
				t.Fatalf("got\n  %s\nwant\n  %s", strings.Join(g, "\n  "), strings.Join(tt.want, "\n  "))
			}
			if !reflect.DeepEqual(tt.history, before) {
				t.Fatalf("modelInput changed its input: %+v", tt.history)
			}
			// Partial messages stay what they were, text included.
			for _, m := range got {
				if m.Role == agentstream.RoleAssistant && m.Content == "half an ans" && m.Status != agentstream.MessagePartial {
					t.Fatalf("partial message became %q", m.Status)
				}
			}
		})
	}
}

// describe writes each message as "role content[ calls=ids][ for=id]".
func describe(msgs []agentstream.Message) []string {
	out := []string{}
	for _, m := range msgs {
		s := fmt.Sprintf("%s %s", m.Role, m.Content)
		if len(m.ToolCalls) > 0 {
			ids := make([]string, len(m.ToolCalls))
			for i, c := range m.ToolCalls {
				ids[i] = c.ID
			}
			s += " calls=" + strings.Join(ids, ",")
		}
		if m.ToolCallID != "" {
			s += " for=" + m.ToolCallID
		}
		out = append(out, s)
	}
	return out
}

func deepCopy(msgs []agentstream.Message) []agentstream.Message {
	if msgs == nil {
		return nil
	}
	out := make([]agentstream.Message, len(msgs))
	for i, m := range msgs {
		m.ToolCalls = append([]agentstream.ToolCall(nil), m.ToolCalls...)
		out[i] = m
	}
	return out
}
