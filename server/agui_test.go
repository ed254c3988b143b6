package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/internal/sse"
	"github.com/agentstream/agentstream/internal/testenv"
	"github.com/agentstream/agentstream/sim"
)

// aguiDir holds the AG-UI client of TestAGUIClient and its locked
// dependencies.
var aguiDir = filepath.Join("testdata", "agui")

func requireAGUIClient(t *testing.T) string {
	t.Helper()
	missing := func(what string) {
		testenv.Missing(t, what, "install Node.js 20 or newer and npm, then run `npm ci --prefix server/testdata/agui`; bash .ci/run does both")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		missing("node is not on PATH")
	}
	for _, p := range []string{"client", "core"} {
		if _, err := os.Stat(filepath.Join(aguiDir, "node_modules", "@ag-ui", p, "package.json")); err != nil {
			missing(aguiDir + "/node_modules has no @ag-ui/" + p + " package")
		}
	}
	return node
}

// TestAGUIClient: @ag-ui/client's HttpAgent runs the agent twice on one
// thread through POST /ag-ui/{agent}, sending the whole conversation each
// time. Every event it receives validates against @ag-ui/core's schemas;
// the runs carry the client's runId; the agent's messages hold the tool
// call with its arguments, its result and the answer; the thread keeps
// each user message once (the earlier ones sent again are not the input),
// and the run had the request's context.
func TestAGUIClient(t *testing.T) {
	t.Parallel()
	node := requireAGUIClient(t)
	e := start(t, sim.Options{}, nil)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join(aguiDir, "script.mjs"), e.url+"/ag-ui/tester", "my-thread",
		"My last period started 2026-06-01: what is my due_date?", "Thanks!")
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	type toolCall struct {
		ID       string `json:"id"`
		Function struct {
			Name      string `json:"name"`
			Arguments string `json:"arguments"`
		} `json:"function"`
	}
	type message struct {
		ID         string     `json:"id"`
		Role       string     `json:"role"`
		Content    string     `json:"content"`
		ToolCalls  []toolCall `json:"toolCalls"`
		ToolCallID string     `json:"toolCallId"`
	}
	var got struct {
		Runs []struct {
			RunID       string      `json:"runId"`
			Events      []aguiEvent `json:"events"`
			NewMessages []message   `json:"newMessages"`
			Error       *string     `json:"error"`
		} `json:"runs"`
		Messages []message `json:"messages"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &got); err != nil || runErr != nil {
		t.Fatalf("the AG-UI client: %v; decoding its answer: %v\nstdout: %s\nstderr: %s", runErr, err, stdout.Bytes(), stderr.Bytes())
	}
	if len(got.Runs) != 2 {
		t.Fatalf("%d runs", len(got.Runs))
	}
	for i, run := range got.Runs {
		if run.Error != nil {
			t.Fatalf("run %d failed: %s", i+1, *run.Error)
		}
		evs := run.Events
		if len(evs) < 3 {
			t.Fatalf("run %d: events %+v", i+1, evs)
		}
		types := make([]string, len(evs))
		for j, ev := range evs {
			types[j] = ev.Type
			if !ev.Valid {
				t.Errorf("run %d: event %d (%s) fails @ag-ui/core's schema: %v", i+1, j, ev.Type, ev.Issues)
			}
		}
		first, last := evs[0], evs[len(evs)-1]
		if first.Type != "RUN_STARTED" || first.RunID != run.RunID || first.ThreadID != "my-thread" ||
			last.Type != "RUN_FINISHED" || last.RunID != run.RunID {
			t.Fatalf("run %d: %v", i+1, types)
		}
		t.Logf("run %d: %v", i+1, types)
	}
	if s := strings.Join(typesOf(got.Runs[0].Events), " "); !strings.Contains(s, "TOOL_CALL_START") || !strings.Contains(s, "TOOL_CALL_RESULT") ||
		!strings.Contains(s, "STEP_STARTED") || !strings.Contains(s, "TEXT_MESSAGE_CONTENT") {
		t.Fatalf("run 1: %s", s)
	}

	// The assembled messages: user, assistant with the call, the tool's
	// result, the answer; then the second question and its answer.
	var call *toolCall
	var result, answer *message
	for i := range got.Messages {
		m := &got.Messages[i]
		switch {
		case m.Role == "assistant" && len(m.ToolCalls) > 0:
			call = &m.ToolCalls[0]
		case m.Role == "tool":
			result = m
		case m.Role == "assistant" && m.Content != "" && answer == nil && result != nil:
			answer = m
		}
	}
	if call == nil || call.Function.Name != "due_date" || !json.Valid([]byte(call.Function.Arguments)) ||
		result == nil || result.ToolCallID != call.ID || result.Content == "" ||
		answer == nil || !strings.Contains(answer.Content, "[simulated]") {
		t.Fatalf("messages %+v", got.Messages)
	}

	// The thread: each user message once, the tool call stored with its
	// result, the request's context on the run.
	stored := e.messages("my-thread")
	users := 0
	for _, m := range stored {
		if m.Role == agentstream.RoleUser {
			users++
		}
	}
	if users != 2 || stored[0].Content != "My last period started 2026-06-01: what is my due_date?" {
		t.Fatalf("stored messages %+v", stored)
	}
	var run agentstream.Run
	e.json("GET", "/v1/runs/"+stored[0].RunID, "", http.StatusOK, &run)
	if run.Context["baby_name"] != "Robin" {
		t.Fatalf("run context %v", run.Context)
	}
}

// aguiEvent is what TestAGUIClient reads of an event the client got.
type aguiEvent struct {
	Type         string `json:"type"`
	Valid        bool   `json:"valid"`
	Issues       any    `json:"issues"`
	RunID        string `json:"runId"`
	ThreadID     string `json:"threadId"`
	ToolCallName string `json:"toolCallName"`
}

func typesOf(evs []aguiEvent) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.Type
	}
	return out
}

// TestAGUIResume: the stream of POST /ag-ui/{agent} carries agentstream's
// run id in X-Run-Id and each event's id: line; GET
// /v1/runs/{id}/events?format=ag-ui with Last-Event-ID gives the rest of
// it (with agentstream's run id as runId), and 204 at its end.
func TestAGUIResume(t *testing.T) {
	t.Parallel()
	e := start(t, sim.Options{Tokens: 20}, nil)
	resp, evs := e.stream("POST", "/ag-ui/tester", `{"threadId":"t-1","runId":"mine","messages":[{"id":"u1","role":"user","content":"What is the current_time?"}],"tools":[],"context":[],"state":{},"forwardedProps":{"x":1}}`)
	runID := resp.Header.Get("X-Run-Id")
	if runID == "" || resp.Header.Get("X-Thread-Id") != "t-1" {
		t.Fatalf("headers %v", resp.Header)
	}
	if len(evs) < 6 || !strings.Contains(evs[0].Data, `"runId":"mine"`) || !strings.Contains(evs[len(evs)-1].Data, `"RUN_FINISHED"`) {
		t.Fatalf("events %+v", evs)
	}
	// Resume after an event in the middle that has an id.
	mid := len(evs) / 2
	for evs[mid].ID == "" {
		mid++
	}
	r, _ := e.openStream(streamCtx(t), "GET", "/v1/runs/"+runID+"/events?format=ag-ui", "", map[string]string{"Last-Event-ID": evs[mid].ID})
	rest := readAll(t, r)
	want := evs[mid+1:]
	if len(rest) != len(want) {
		t.Fatalf("resumed after %s: %d events, want %d:\n%+v\n%+v", evs[mid].ID, len(rest), len(want), rest, want)
	}
	for i := range want {
		// A resumed stream knows neither the client's runId nor always
		// its thread id: it carries agentstream's.
		w := strings.ReplaceAll(want[i].Data, `"runId":"mine"`, `"runId":"`+runID+`"`)
		if th := threadIDIn(rest[i].Data); th != "" {
			w = strings.ReplaceAll(w, `"threadId":"t-1"`, `"threadId":"`+th+`"`)
		}
		if rest[i].ID != want[i].ID || rest[i].Data != w {
			t.Fatalf("resumed event %d: %+v, want %+v", i, rest[i], want[i])
		}
	}
	if got := e.status("GET", "/v1/runs/"+runID+"/events?format=ag-ui", map[string]string{"Last-Event-ID": evs[len(evs)-1].ID}); got != http.StatusNoContent {
		t.Fatalf("at the end: status %d", got)
	}
}

// threadIDIn is the threadId of an AG-UI event's data, if any.
func threadIDIn(data string) string {
	var d struct {
		ThreadID string `json:"threadId"`
	}
	_ = json.Unmarshal([]byte(data), &d)
	return d.ThreadID
}

func readAll(t *testing.T, r *sse.Reader) []sse.Event {
	t.Helper()
	var evs []sse.Event
	for {
		ev, err := r.Next()
		if err == io.EOF {
			return evs
		}
		if err != nil {
			t.Fatalf("after %d events: %v", len(evs), err)
		}
		evs = append(evs, ev)
	}
}

// TestAGUIRefused: what POST /ag-ui/{agent} cannot run is answered with
// a clear error, and writes nothing.
func TestAGUIRefused(t *testing.T) {
	t.Parallel()
	e := start(t, sim.Options{}, nil)
	user := `{"id":"u1","role":"user","content":"hi"}`
	tests := []struct {
		name, path, body string
		status           int
		want             string
	}{
		{"client tools", "/ag-ui/tester", `{"threadId":"r1","runId":"x","messages":[` + user + `],"tools":[{"name":"f","description":"d"}]}`, 400, "client-side tools"},
		{"no threadId", "/ag-ui/tester", `{"runId":"x","messages":[` + user + `]}`, 400, `"threadId" is required`},
		{"no runId", "/ag-ui/tester", `{"threadId":"r1","messages":[` + user + `]}`, 400, `"runId" is required`},
		{"no messages", "/ag-ui/tester", `{"threadId":"r1","runId":"x","messages":[]}`, 400, "must end with the user's message"},
		{"regenerate", "/ag-ui/tester", `{"threadId":"r1","runId":"x","messages":[` + user + `,{"id":"a1","role":"assistant","content":"yo"}]}`, 400, "regenerating"},
		{"image", "/ag-ui/tester", `{"threadId":"r1","runId":"x","messages":[{"id":"u","role":"user","content":[{"type":"image","source":{"type":"url","value":"http://x"}}]}]}`, 400, "only text parts"},
		{"bad context", "/ag-ui/tester", `{"threadId":"r1","runId":"x","messages":[` + user + `],"context":[{"value":"v"}]}`, 400, `"context"[0]`},
		{"resume", "/ag-ui/tester", `{"threadId":"r1","runId":"x","messages":[` + user + `],"resume":[{"interruptId":"i","status":"resolved"}]}`, 400, "resume"},
		{"bad thread id", "/ag-ui/tester", `{"threadId":"a b","runId":"x","messages":[` + user + `]}`, 400, "thread_id"},
		{"unknown agent", "/ag-ui/nobody", `{"threadId":"r1","runId":"x","messages":[` + user + `]}`, 400, `unknown agent "nobody"`},
	}
	for _, tt := range tests {
		resp := e.do("POST", tt.path, tt.body)
		b, _ := io.ReadAll(resp.Body)
		var apiErr struct {
			Error struct{ Message string }
		}
		_ = json.Unmarshal(b, &apiErr)
		if resp.StatusCode != tt.status || !strings.Contains(apiErr.Error.Message, tt.want) {
			t.Errorf("%s: status %d %s, want %d with %q", tt.name, resp.StatusCode, b, tt.status, tt.want)
		}
	}
	// Nothing was written: thread r1 does not exist.
	if got := e.status("GET", "/v1/threads/r1", nil); got != http.StatusNotFound {
		t.Fatalf("thread r1: status %d", got)
	}
}
