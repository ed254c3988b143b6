package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/internal/testenv"
	"github.com/agentstream/agentstream/sim"
)

// aiSDKDir holds the Node client of the AI SDK tests: ai 5.0.0 (strict
// chunk schema) and the newest major, locked.
var aiSDKDir = filepath.Join("testdata", "aisdk")

// uiMessage is a UIMessage as the AI SDK's client assembles it.
type uiMessage struct {
	ID    string `json:"id"`
	Role  string `json:"role"`
	Parts []struct {
		Type       string `json:"type"`
		Text       string `json:"text"`
		State      string `json:"state"`
		ToolCallID string `json:"toolCallId"`
		Input      any    `json:"input"`
		Output     any    `json:"output"`
		ErrorText  string `json:"errorText"`
	} `json:"parts"`
}

type uiRead struct {
	Message *uiMessage `json:"message"`
	Errors  []string   `json:"errors"`
	Thrown  string     `json:"thrown"`
}

// text is the message's text parts joined.
func (m *uiMessage) text() string {
	var b strings.Builder
	for _, p := range m.Parts {
		if p.Type == "text" {
			b.WriteString(p.Text)
		}
	}
	return b.String()
}

// runAISDK runs the Node client in mode on arg and decodes its JSON.
func runAISDK(t *testing.T, out any, mode, arg string) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		testenv.Missing(t, "node is not on PATH", "install Node.js 20 or newer and npm; bash .ci/run does")
	}
	for _, pkg := range []string{"ai5", "ai7"} {
		if _, err := os.Stat(filepath.Join(aiSDKDir, "node_modules", pkg, "package.json")); err != nil {
			testenv.Missing(t, aiSDKDir+"/node_modules has no "+pkg, "run `npm ci --prefix server/testdata/aisdk`; bash .ci/run does")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join(aiSDKDir, "script.mjs"), mode, arg)
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	if err := json.Unmarshal(stdout.Bytes(), out); err != nil || runErr != nil {
		t.Fatalf("the AI SDK client: %v; decoding its answer: %v\nstdout: %s\nstderr: %s", runErr, err, stdout.Bytes(), stderr.Bytes())
	}
}

// TestAISDKGolden: every golden file of the UI message stream, served as
// a response to the AI SDK's DefaultChatTransport, passes the chunk
// schema of ai 5.0.0 (which refuses unknown chunks and fields) and of the
// newest major, and assembles into the message the events say.
func TestAISDKGolden(t *testing.T) {
	t.Parallel()
	var got map[string]map[string]uiRead
	runAISDK(t, &got, "golden", filepath.Join("..", "httpapi", "wire", "testdata", "golden"))
	want := map[string]struct {
		text  string
		parts string
		err   string
	}{
		"ui-tool-run.sse":    {"Due <on> \"Oct 7\"\n é \u2028 \ufffd", "tool-due_date text", ""},
		"ui-steps.sse":       {"Let me check.Found it.", "step-start text tool-lookup tool-broken step-start text", ""},
		"ui-failed.sse":      {"Part", "text", "model API returned 500"},
		"ui-interrupted.sse": {"Half", "step-start text", "run.interrupted"},
		"ui-rebuilt-end.sse": {"Checking.Due Oct 7.", "text text", ""},
		"ui-cancelled.sse":   {"", "", ""},
	}
	if len(got) != len(want) {
		t.Fatalf("read %d golden files, want %d", len(got), len(want))
	}
	for file, w := range want {
		for _, client := range []string{"ai5", "ai7"} {
			r := got[file][client]
			if r.Thrown != "" || r.Message == nil {
				t.Fatalf("%s, %s: threw %q", file, client, r.Thrown)
			}
			var types []string
			for _, p := range r.Message.Parts {
				types = append(types, p.Type)
				if p.State != "" && p.State != "done" && p.State != "output-available" && p.State != "output-error" {
					t.Errorf("%s, %s: part %s left %s", file, client, p.Type, p.State)
				}
			}
			errs := strings.Join(r.Errors, "; ")
			if r.Message.text() != w.text || strings.Join(types, " ") != w.parts || (w.err == "") != (errs == "") || !strings.Contains(errs, w.err) {
				t.Errorf("%s, %s: text %q, parts %v, errors %q; want %q, %s, %q", file, client, r.Message.text(), types, errs, w.text, w.parts, w.err)
			}
		}
	}
}

// TestAISDKChat: the AI SDK's DefaultChatTransport (what useChat sends
// with) and readUIMessageStream, of ai 5 and the newest major, against the
// real server: the assembled message holds the text and the tool part
// with its input and output, as stored; a request dropped mid-answer and
// resumed as useChat({resume: true}) does gives the same message whole;
// after the run's end there is nothing to resume; regenerate is refused
// with the server's message as the client's error.
func TestAISDKChat(t *testing.T) {
	t.Parallel()
	// The answer after the tool's result goes on for about 2 s: the
	// dropped chat's run must still be going when the client reconnects,
	// also on a busy machine (the simulator's short default answer to a
	// tool's result left a window of about 100 ms, and under CI's load the
	// run sometimes ended before Node had reconnected).
	long := func(r *sim.Request) sim.Behavior {
		b := sim.Default(r)
		if r.LastMessage().Role == "tool" {
			b.Text += strings.Repeat(" More.", 200)
		}
		return b
	}
	e := start(t, sim.Options{Pace: 10 * time.Millisecond, Decide: long}, nil)
	var got map[string]struct {
		Full         uiRead  `json:"full"`
		FullRunID    string  `json:"fullRunId"`
		Dropped      uiRead  `json:"dropped"`
		DroppedRunID string  `json:"droppedRunId"`
		Resumed      *uiRead `json:"resumed"`
		ResumedRunID string  `json:"resumedRunId"`
		AfterEnd     string  `json:"afterEnd"`
		Regenerate   string  `json:"regenerate"`
	}
	runAISDK(t, &got, "chat", e.url)
	for _, client := range []string{"ai5", "ai7"} {
		r, ok := got[client]
		if !ok {
			t.Fatalf("no result for %s", client)
		}
		for chat, read := range map[string]*uiRead{"full-" + client: &r.Full, "resume-" + client: r.Resumed} {
			if read == nil || read.Message == nil || len(read.Errors) > 0 {
				t.Fatalf("%s: %+v (all: %+v)", chat, read, r)
			}
			checkUIMessage(t, e, chat, read.Message)
		}
		if r.Full.Message.ID != r.FullRunID {
			t.Errorf("%s: message id %q, run %q", client, r.Full.Message.ID, r.FullRunID)
		}
		// The dropped request had part of the answer; the resumed one is
		// the same run's, from its start.
		if r.Dropped.Message == nil || r.DroppedRunID != r.ResumedRunID || r.Resumed.Message.ID != r.DroppedRunID ||
			!strings.HasPrefix(r.Resumed.Message.text(), r.Dropped.Message.text()) || len(r.Dropped.Message.Parts) >= len(r.Resumed.Message.Parts) {
			t.Fatalf("%s: dropped %+v (run %s), resumed %+v (run %s)", client, r.Dropped.Message, r.DroppedRunID, r.Resumed.Message, r.ResumedRunID)
		}
		if r.AfterEnd != "null" {
			t.Errorf("%s: resuming after the end gave %s", client, r.AfterEnd)
		}
		if !strings.Contains(r.Regenerate, "regenerate-message") || !strings.Contains(r.Regenerate, "not supported") {
			t.Errorf("%s: regenerate: %s", client, r.Regenerate)
		}
	}
}

// checkUIMessage checks a message the client assembled against the
// thread's stored answer: the text, and one tool part with the stored
// call's input and result.
func checkUIMessage(t *testing.T, e *env, chat string, m *uiMessage) {
	t.Helper()
	msgs := e.messages(chat)
	var call agentstream.ToolCall
	var result, answer string
	for _, msg := range msgs {
		switch {
		case msg.Role == agentstream.RoleAssistant && len(msg.ToolCalls) > 0:
			call = msg.ToolCalls[0]
		case msg.Role == agentstream.RoleTool:
			result = msg.Content
		case msg.Role == agentstream.RoleAssistant:
			answer = msg.Content
		}
	}
	if m.Role != "assistant" || !strings.HasSuffix(m.text(), answer) || answer == "" {
		t.Fatalf("%s: assembled %q (%s), stored answer %q", chat, m.text(), m.Role, answer)
	}
	var tools int
	for _, p := range m.Parts {
		if !strings.HasPrefix(p.Type, "tool-") {
			continue
		}
		tools++
		in, _ := json.Marshal(p.Input)
		var want any
		_ = json.Unmarshal([]byte(call.Arguments), &want)
		wantIn, _ := json.Marshal(want)
		if p.Type != "tool-"+call.Name || p.ToolCallID != call.ID || p.State != "output-available" || string(in) != string(wantIn) || p.Output != result {
			t.Fatalf("%s: tool part %+v; stored call %+v, result %q", chat, p, call, result)
		}
	}
	if tools != 1 {
		t.Fatalf("%s: %d tool parts: %+v", chat, tools, m.Parts)
	}
}
