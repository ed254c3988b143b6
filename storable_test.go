package agentstream

import (
	"errors"
	"strings"
	"testing"
)

// TestThreadKey: keys are stored, so the derivation must never change
// (the value is SHA-256 computed elsewhere); they are per user and have
// the shape of a random thread id.
func TestThreadKey(t *testing.T) {
	t.Parallel()
	if got, want := ThreadKey("alice", "hana-1"), "thr_5YDKM6TMUTNIJNRO5RVTYU26ER"; got != want {
		t.Fatalf("ThreadKey(alice, hana-1) = %s, want %s", got, want)
	}
	if ThreadKey("alice", "hana-1") == ThreadKey("bob", "hana-1") {
		t.Error("two users' threads of one id share a key")
	}
	// The separator keeps (user, id) pairs apart.
	if ThreadKey("a", "b:c") == ThreadKey("a:b", "c") || ThreadKey("ab", "c") == ThreadKey("a", "bc") {
		t.Error("different (user, id) pairs share a key")
	}
	if k, r := ThreadKey("u", "x"), NewID("thr_"); len(k) != len(r) || !ValidID(k) {
		t.Errorf("key %q does not look like a random id %q", k, r)
	}
}

func TestPublicID(t *testing.T) {
	t.Parallel()
	if got := (Thread{ID: "thr_A"}).PublicID(); got != "thr_A" {
		t.Errorf("server-named thread: %q", got)
	}
	if got := (Thread{ID: ThreadKey("u", "hana-1"), ClientID: "hana-1"}).PublicID(); got != "hana-1" {
		t.Errorf("client-named thread: %q", got)
	}
}

func TestValidText(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		s        string
		text, id bool
	}{
		{"", true, true},
		{"hana-1", true, true},
		{"Première nuit 🌙 \ufffd", true, true},
		{"a\x00b", false, false},
		{"\x00", false, false},
		{"a\xffb", false, false},
		{"\xed\xa0\x80", false, false}, // a surrogate (U+D800) encoded as UTF-8
		{"\xc3", false, false},         // a truncated sequence
		{strings.Repeat("é", MaxIDBytes/2), true, true},
		{strings.Repeat("x", MaxIDBytes+1), true, false},
		{strings.Repeat("x", 3000), true, false},
	} {
		if got := ValidText(tc.s); got != tc.text {
			t.Errorf("ValidText(%.20q) = %v, want %v", tc.s, got, tc.text)
		}
		if got := ValidID(tc.s); got != tc.id {
			t.Errorf("ValidID(%.20q) = %v, want %v", tc.s, got, tc.id)
		}
		if err := CheckID("x", tc.s); (err == nil) != tc.id || (err != nil && !errors.Is(err, ErrInvalid)) {
			t.Errorf("CheckID(%.20q) = %v", tc.s, err)
		}
	}
}

func TestHasNULEscape(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		json string
		want bool
	}{
		{`{"a":"b"}`, false},
		{`{"a":"\u0000"}`, true},
		{`{"a\u0000":1}`, true},
		{`{"a":"\\u0000"}`, false},   // a backslash, then u0000
		{`{"a":"\\\u0000"}`, true},   // a backslash, then NUL
		{`{"a":"\\\\u0000"}`, false}, // two backslashes, then u0000
		{`{"a":"\\u0000\u0000"}`, true},
		{`{"a":"\u00001"}`, true},
		{`{"a":"\u0001"}`, false},
	} {
		if got := hasNULEscape([]byte(tc.json)); got != tc.want {
			t.Errorf("hasNULEscape(%s) = %v, want %v", tc.json, got, tc.want)
		}
	}
}

type named struct{ Name string }

func TestChecks(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("k", MaxIDBytes+1)
	for _, tc := range []struct {
		name  string
		err   error
		field string // in the message; "" for no error
	}{
		{"thread ok", Thread{ID: "thr_A", ClientID: "hana-1", UserID: "u", Agent: "a", Title: "t 🌙",
			Metadata: map[string]any{"k": []any{"v", 1.0, nil, true, map[string]any{"x": "y"}}, "named": named{"ok"}},
			Context:  map[string]any{"baby_name": "Ada"}}.Check(), ""},
		{"thread long id", Thread{ID: long}.Check(), "thread id is longer than 256 bytes"},
		{"thread NUL id", Thread{ID: "a\x00"}.Check(), "thread id holds a NUL"},
		{"thread long client id", Thread{ID: "k", ClientID: long}.Check(), "thread client id is longer"},
		{"thread bad user", Thread{UserID: "\xff"}.Check(), "thread user id is not valid UTF-8"},
		{"thread NUL agent", Thread{Agent: "a\x00"}.Check(), "thread agent holds a NUL"},
		{"thread surrogate title", Thread{Title: "\xed\xa0\x80"}.Check(), "thread title is not valid UTF-8"},
		{"thread NUL metadata key", Thread{Metadata: map[string]any{"a\x00": 1.0}}.Check(), "thread metadata holds a NUL"},
		{"thread NUL nested value", Thread{Metadata: map[string]any{"a": []any{map[string]any{"b": "\x00"}}}}.Check(), "thread metadata holds a NUL"},
		{"thread NUL in a Go value", Thread{Metadata: map[string]any{"a": named{"\x00"}}}.Check(), "thread metadata holds a NUL"},
		{"thread NUL context", Thread{Context: map[string]any{"a": "x\x00"}}.Check(), "thread context holds a NUL"},
		{"run ok", Run{ID: "run_A", ThreadID: "thr_A", UserID: "u", Agent: "a", Owner: "i1",
			Error: &ErrorInfo{Code: CodeUpstream, Message: "m"}, Context: map[string]any{"k": "v"}}.Check(), ""},
		{"run long id", Run{ID: long}.Check(), "run id is longer"},
		{"run long thread id", Run{ThreadID: long}.Check(), "run thread id is longer"},
		{"run bad agent", Run{Agent: "\xff"}.Check(), "run agent is not valid UTF-8"},
		{"run NUL error", Run{Error: &ErrorInfo{Message: "\x00"}}.Check(), "run error message holds a NUL"},
		{"run NUL context", Run{Context: map[string]any{"\x00": "v"}}.Check(), "run context holds a NUL"},
		{"message ok", Message{ID: "msg_A", Content: "hi", ToolCalls: []ToolCall{{ID: "c", Name: "n", Arguments: "{}"}}}.Check(), ""},
		{"message long id", Message{ID: long}.Check(), "message id is longer"},
		{"message NUL content", Message{Content: "a\x00"}.Check(), "message content holds a NUL"},
		{"message bad content", Message{Content: "\xff"}.Check(), "message content is not valid UTF-8"},
		{"message NUL tool name", Message{ToolName: "\x00"}.Check(), "message tool name holds a NUL"},
		{"message NUL arguments", Message{ToolCalls: []ToolCall{{Arguments: `{"a":"` + "\x00" + `"}`}}}.Check(), "tool call argument text holds a NUL"},
	} {
		switch {
		case tc.field == "" && tc.err != nil:
			t.Errorf("%s: %v", tc.name, tc.err)
		case tc.field != "" && (!errors.Is(tc.err, ErrInvalid) || !strings.Contains(tc.err.Error(), tc.field)):
			t.Errorf("%s: %v, want ErrInvalid saying %q", tc.name, tc.err, tc.field)
		}
	}
}
