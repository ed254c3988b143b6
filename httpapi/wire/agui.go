package wire

import (
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/internal/jsonstr"
)

// agui is the AG-UI protocol's event stream (@ag-ui/core 1.0): data-only
// SSE events, each a JSON object whose "type" names it, checked against
// the package's own schemas and its client's rules of order (a run opens
// with RUN_STARTED; RUN_FINISHED only once every text message, tool call
// and step is closed; nothing after RUN_FINISHED or RUN_ERROR).
//
// One log event may make several AG-UI events (a tool call that arrives
// whole is TOOL_CALL_START, _ARGS and _END); only the last carries the
// log event's id, so a reader cut inside the group resumes before it.
type agui struct {
	threadID, runID string
	// started is set once RUN_STARTED is written: before the first event
	// whatever it is (an end rebuilt from the store has no run.created).
	started bool
	// step is the open step's number (0: none), stepMsg its message.
	step    int
	stepMsg string
	// msg is the open text message (""), sent the text it has had.
	msg  string
	sent []byte
	// ended are the text messages closed, so an end rebuilt from the
	// store does not send one of them again.
	ended []string
	// calls are the tool calls opened and not yet closed, in order;
	// closed those closed (a rebuilt or repeated tool.call opens none).
	calls, closed []string
	// scratch holds one decoded delta.
	scratch []byte
}

// NewAGUI makes an encoder of the AG-UI format whose events carry
// agentstream's run id as their runId: the stream of a resumed run.
func NewAGUI(s Stream) Encoder { return &agui{threadID: s.ThreadID, runID: s.RunID} }

// NewAGUIRun is NewAGUI whose events carry runID, the one an AG-UI
// client chose, as their runId (agentstream's rides in X-Run-Id and the
// events' id: lines).
func NewAGUIRun(runID string) NewEncoder {
	return func(s Stream) Encoder { return &agui{threadID: s.ThreadID, runID: runID} }
}

func (*agui) Header(h http.Header) { SSEHeader(h) }

// Start is nothing: AG-UI streams open with RUN_STARTED.
func (*agui) Start(buf []byte) []byte { return buf }

// Heartbeat is a comment line, which the AG-UI client skips (it reads
// data: lines only).
func (*agui) Heartbeat(buf []byte) []byte { return append(buf, ": heartbeat\n\n"...) }

// End is nothing: RUN_FINISHED or RUN_ERROR ends the stream.
func (*agui) End(buf []byte) []byte { return buf }

// Skip keeps what events already sent opened and closed.
func (e *agui) Skip(ev agentstream.Event) { _ = e.Encode(nil, ev) }

// Event payloads, with @ag-ui/core's field names.
type (
	aguiRunStarted struct {
		Type     string `json:"type"`
		ThreadID string `json:"threadId"`
		RunID    string `json:"runId"`
	}
	aguiStep struct {
		Type     string `json:"type"`
		StepName string `json:"stepName"`
	}
	aguiMessage struct {
		Type      string `json:"type"`
		MessageID string `json:"messageId"`
		Role      string `json:"role,omitempty"`
	}
	aguiToolStart struct {
		Type            string `json:"type"`
		ToolCallID      string `json:"toolCallId"`
		ToolCallName    string `json:"toolCallName"`
		ParentMessageID string `json:"parentMessageId,omitempty"`
	}
	aguiToolArgs struct {
		Type       string `json:"type"`
		ToolCallID string `json:"toolCallId"`
		Delta      string `json:"delta"`
	}
	aguiToolEnd struct {
		Type       string `json:"type"`
		ToolCallID string `json:"toolCallId"`
	}
	aguiToolResult struct {
		Type       string `json:"type"`
		MessageID  string `json:"messageId"`
		ToolCallID string `json:"toolCallId"`
		Content    string `json:"content"`
		Role       string `json:"role"`
	}
	aguiOutcome struct {
		Type string `json:"type"`
	}
	aguiUsage struct {
		InputTokens  int64 `json:"inputTokens"`
		OutputTokens int64 `json:"outputTokens"`
		TotalTokens  int64 `json:"totalTokens"`
	}
	aguiRunFinished struct {
		Type     string       `json:"type"`
		ThreadID string       `json:"threadId"`
		RunID    string       `json:"runId"`
		Outcome  *aguiOutcome `json:"outcome,omitempty"`
		Usage    []aguiUsage  `json:"usage,omitempty"`
	}
	aguiRunError struct {
		Type    string      `json:"type"`
		Message string      `json:"message"`
		Code    string      `json:"code,omitempty"`
		Usage   []aguiUsage `json:"usage,omitempty"`
	}
)

// AGUIResultMessageID is the id of the tool message a TOOL_CALL_RESULT
// makes for the call callID.
func AGUIResultMessageID(callID string) string { return "result_" + callID }

func (e *agui) Encode(buf []byte, ev agentstream.Event) []byte {
	// The events of one log event are written first without an id; the id
	// goes on the last of them.
	start := len(buf)
	if !e.started {
		e.started = true
		buf = appendAGUI(buf, aguiRunStarted{Type: "RUN_STARTED", ThreadID: e.threadID, RunID: e.runID})
	}
	switch ev.Type {
	case agentstream.EventStepStarted:
		var d agentstream.StepStartedData
		if json.Unmarshal(ev.Data, &d) != nil {
			break
		}
		buf = e.closeStep(buf)
		e.step, e.stepMsg = max(d.Step, 1), d.MessageID
		buf = appendAGUI(buf, aguiStep{Type: "STEP_STARTED", StepName: stepName(e.step)})
	case agentstream.EventStepCompleted:
		buf = e.closeStep(buf)
	case agentstream.EventMessageDelta:
		text, id, ok := DecodeDelta(e.scratch[:0], ev.Data)
		e.scratch = text
		if !ok {
			break
		}
		if e.msg != string(id) {
			if slices.Contains(e.ended, string(id)) {
				break // a message closed gets nothing more
			}
			buf = e.closeMessage(buf)
			e.msg, e.sent = string(id), e.sent[:0]
			buf = appendAGUI(buf, aguiMessage{Type: "TEXT_MESSAGE_START", MessageID: e.msg, Role: "assistant"})
		}
		if len(text) > 0 {
			e.sent = append(e.sent, text...)
			buf = append(buf, `data: {"type":"TEXT_MESSAGE_CONTENT","messageId":`...)
			buf = jsonstr.Append(buf, e.msg, false)
			buf = append(buf, `,"delta":`...)
			buf = jsonstr.Append(buf, bytesString(text), false)
			buf = append(buf, "}\n\n"...)
		}
	case agentstream.EventMessageCompleted:
		var d agentstream.MessageCompletedData
		if json.Unmarshal(ev.Data, &d) != nil || d.Role != agentstream.RoleAssistant || slices.Contains(e.ended, d.MessageID) {
			break
		}
		if e.msg != d.MessageID {
			buf = e.closeMessage(buf)
			if d.Content == "" {
				break // a turn of tool calls only
			}
			// A message whose deltas this stream did not carry (an end
			// rebuilt from the store): whole.
			e.msg, e.sent = d.MessageID, e.sent[:0]
			buf = appendAGUI(buf, aguiMessage{Type: "TEXT_MESSAGE_START", MessageID: e.msg, Role: "assistant"})
		}
		// The rest of the text the deltas did not carry, when they are
		// its start (an end rebuilt after some of them were read).
		if rest, ok := cutPrefix(d.Content, e.sent); ok && rest != "" {
			buf = appendAGUI(buf, struct {
				Type      string `json:"type"`
				MessageID string `json:"messageId"`
				Delta     string `json:"delta"`
			}{"TEXT_MESSAGE_CONTENT", e.msg, rest})
		}
		buf = e.closeMessage(buf)
	case agentstream.EventToolArgumentsDelta:
		var d agentstream.ToolArgumentsDeltaData
		if json.Unmarshal(ev.Data, &d) != nil || slices.Contains(e.closed, d.CallID) {
			break
		}
		buf = e.openCall(buf, d.CallID, d.Name)
		if d.Delta != "" {
			buf = appendAGUI(buf, aguiToolArgs{Type: "TOOL_CALL_ARGS", ToolCallID: d.CallID, Delta: d.Delta})
		}
	case agentstream.EventToolCall:
		var d agentstream.ToolCallData
		if json.Unmarshal(ev.Data, &d) != nil || slices.Contains(e.closed, d.CallID) {
			break
		}
		if !slices.Contains(e.calls, d.CallID) {
			// Arguments that came whole, not as deltas.
			buf = e.openCall(buf, d.CallID, d.Name)
			args := string(d.Arguments)
			var s string
			if json.Unmarshal(d.Arguments, &s) == nil {
				args = s // the model's text, which was not JSON
			}
			buf = appendAGUI(buf, aguiToolArgs{Type: "TOOL_CALL_ARGS", ToolCallID: d.CallID, Delta: args})
		}
		buf = e.closeCall(buf, d.CallID)
	case agentstream.EventToolResult:
		var d agentstream.ToolResultData
		if json.Unmarshal(ev.Data, &d) != nil {
			break
		}
		buf = e.closeCall(buf, d.CallID)
		buf = appendAGUI(buf, aguiToolResult{Type: "TOOL_CALL_RESULT", MessageID: AGUIResultMessageID(d.CallID), ToolCallID: d.CallID, Content: d.Output, Role: "tool"})
	case agentstream.EventRunCompleted, agentstream.EventRunCancelled, agentstream.EventRunFailed, agentstream.EventRunInterrupted:
		var d agentstream.RunEndData
		_ = json.Unmarshal(ev.Data, &d)
		var usage []aguiUsage
		if d.Usage != (agentstream.Usage{}) {
			usage = []aguiUsage{{d.Usage.InputTokens, d.Usage.OutputTokens, d.Usage.InputTokens + d.Usage.OutputTokens}}
		}
		// RUN_FINISHED needs every message, call and step closed; RUN_ERROR
		// does not, but a client's view is tidier with them closed too.
		buf = e.closeMessage(buf)
		for len(e.calls) > 0 {
			buf = e.closeCall(buf, e.calls[0])
		}
		buf = e.closeStep(buf)
		switch ev.Type {
		case agentstream.EventRunCompleted:
			buf = appendAGUI(buf, aguiRunFinished{Type: "RUN_FINISHED", ThreadID: e.threadID, RunID: e.runID, Usage: usage})
		case agentstream.EventRunCancelled:
			buf = appendAGUI(buf, aguiRunFinished{Type: "RUN_FINISHED", ThreadID: e.threadID, RunID: e.runID, Outcome: &aguiOutcome{"cancelled"}, Usage: usage})
		default:
			msg, code := "the run ended without an answer", string(agentstream.CodeInternal)
			if d.Error != nil {
				msg, code = d.Error.Message, string(d.Error.Code)
			}
			buf = appendAGUI(buf, aguiRunError{Type: "RUN_ERROR", Message: msg, Code: code, Usage: usage})
		}
	}
	return withLastID(buf, start, ev.Seq)
}

// stepName names the step of a run's model call n.
func stepName(n int) string { return "step " + strconv.Itoa(n) }

func (e *agui) closeStep(buf []byte) []byte {
	if e.step == 0 {
		return buf
	}
	buf = appendAGUI(buf, aguiStep{Type: "STEP_FINISHED", StepName: stepName(e.step)})
	e.step, e.stepMsg = 0, ""
	return buf
}

func (e *agui) closeMessage(buf []byte) []byte {
	if e.msg == "" {
		return buf
	}
	buf = appendAGUI(buf, aguiMessage{Type: "TEXT_MESSAGE_END", MessageID: e.msg})
	e.ended = append(e.ended, e.msg)
	e.msg, e.sent = "", e.sent[:0]
	return buf
}

// openCall opens call id, unless it is open.
func (e *agui) openCall(buf []byte, id, name string) []byte {
	if slices.Contains(e.calls, id) {
		return buf
	}
	e.calls = append(e.calls, id)
	return appendAGUI(buf, aguiToolStart{Type: "TOOL_CALL_START", ToolCallID: id, ToolCallName: name, ParentMessageID: e.stepMsg})
}

// closeCall closes call id, when it is open.
func (e *agui) closeCall(buf []byte, id string) []byte {
	i := slices.Index(e.calls, id)
	if i < 0 {
		return buf
	}
	e.calls = slices.Delete(e.calls, i, i+1)
	e.closed = append(e.closed, id)
	return appendAGUI(buf, aguiToolEnd{Type: "TOOL_CALL_END", ToolCallID: id})
}

// cutPrefix is s without prefix p, when s starts with it.
func cutPrefix(s string, p []byte) (string, bool) {
	if len(s) < len(p) || s[:len(p)] != string(p) {
		return "", false
	}
	return s[len(p):], true
}

// withLastID puts the id: line of event seq on the last SSE event of
// buf[start:] (events are split by blank lines: JSON holds no raw
// newline).
func withLastID(buf []byte, start int, seq int64) []byte {
	if seq <= 0 || len(buf) == start {
		return buf
	}
	last := start
	if i := bytes.LastIndex(buf[start:len(buf)-2], []byte("\n\n")); i >= 0 {
		last = start + i + 2
	}
	id := AppendID(nil, seq)
	buf = append(buf, id...)
	copy(buf[last+len(id):], buf[last:len(buf)-len(id)])
	copy(buf[last:], id)
	return buf
}

func appendAGUI(buf []byte, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		return buf
	}
	buf = append(buf, "data: "...)
	buf = append(buf, b...)
	return append(buf, "\n\n"...)
}
