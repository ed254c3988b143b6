package wire

import (
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/internal/jsonstr"
)

// ui is the Vercel AI SDK's UI message stream (protocol v1), what its
// useChat reads: one assistant UI message per run, as data-only JSON
// chunks, then data: [DONE].
//
// Only the chunks and fields that ai 5.0.0 accepts are written: its
// schema of chunks is strict (an unknown field fails the whole stream),
// and later majors take what it takes. So finish carries no
// finishReason, and no chunk carries agentstream's own fields.
//
// The run's events map to chunks as
//
//	first event                 start {messageId: the run's id}
//	step.started                start-step
//	message.delta               text-start (a message's first), text-delta
//	message.completed           the text not yet sent, text-end; the whole
//	                            text when none was (an end rebuilt from
//	                            the store)
//	step.completed              text-end of open texts, finish-step
//	tool.arguments.delta        tool-input-start (a call's first), tool-input-delta
//	tool.call                   tool-input-start (if not yet), tool-input-available
//	tool.result                 tool-output-available, or tool-output-error
//	                            when the tool failed
//	run.completed               finish
//	run.cancelled               abort, finish
//	run.failed, run.interrupted error {errorText}, finish
//
// Texts still open are ended (and a step still open finished) before the
// terminal event's chunks: the client throws on a text-end or a
// tool-input-delta it has no start for, so the encoder never writes one.
// One event may make several chunks: the run's event id goes on the id:
// line of its last, so a stream cut inside them resumes with all of them.
type ui struct {
	messageID string
	started   bool
	stepOpen  bool
	// texts are the messages whose text-start was written and text-end
	// not yet, in order, with the text sent; ended are those ended.
	texts []uiText
	ended map[string]bool
	// tools is how far each tool call got.
	tools map[string]uiTool
	// scratch holds one decoded delta.
	scratch []byte
}

type uiText struct {
	id   string
	sent []byte
}

type uiTool int

const (
	uiToolInput     uiTool = iota + 1 // tool-input-start sent
	uiToolAvailable                   // tool-input-available sent
	uiToolDone                        // its output sent
)

// NewUI makes an encoder of the AI SDK UI message stream.
func NewUI(s Stream) Encoder {
	return &ui{messageID: s.RunID, ended: map[string]bool{}, tools: map[string]uiTool{}}
}

// UIStreamHeader is the header the AI SDK's clients read the UI message
// stream by.
const UIStreamHeader = "X-Vercel-Ai-Ui-Message-Stream"

func (*ui) Header(h http.Header) {
	SSEHeader(h)
	h.Set(UIStreamHeader, "v1")
}

// Start is nothing: the start chunk comes with the first event, once in a
// whole stream, so a resumed stream is the rest of it.
func (*ui) Start(buf []byte) []byte { return buf }

// Heartbeat is a comment line, which the SDK's SSE parser skips.
func (*ui) Heartbeat(buf []byte) []byte { return append(buf, ": heartbeat\n\n"...) }

func (*ui) End(buf []byte) []byte { return append(buf, "data: [DONE]\n\n"...) }

// Skip replays an event already sent: the chunks it made are dropped and
// the state they left is kept.
func (e *ui) Skip(ev agentstream.Event) { _ = e.Encode(nil, ev) }

func (e *ui) Encode(buf []byte, ev agentstream.Event) []byte {
	from := len(buf)
	last := -1 // where the event's last chunk starts
	chunk := func(parts ...string) {
		last = len(buf)
		buf = append(buf, `data: {"type":`...)
		for _, p := range parts {
			buf = append(buf, p...)
		}
		buf = append(buf, "}\n\n"...)
	}
	str := func(s string) string { return string(jsonstr.Append(nil, s, true)) }
	if !e.started {
		e.started = true
		chunk(`"start","messageId":`, str(e.messageID))
	}
	endTexts := func() {
		for _, t := range e.texts {
			chunk(`"text-end","id":`, str(t.id))
			e.ended[t.id] = true
		}
		e.texts = e.texts[:0]
	}
	switch ev.Type {
	case agentstream.EventStepStarted:
		endTexts()
		if e.stepOpen {
			chunk(`"finish-step"`)
		}
		e.stepOpen = true
		chunk(`"start-step"`)
	case agentstream.EventStepCompleted:
		endTexts()
		if e.stepOpen {
			e.stepOpen = false
			chunk(`"finish-step"`)
		}
	case agentstream.EventMessageDelta:
		text, id, ok := DecodeDelta(e.scratch[:0], ev.Data)
		e.scratch = text
		if !ok || len(text) == 0 || e.ended[string(id)] {
			break
		}
		t := e.text(string(id), func(id string) { chunk(`"text-start","id":`, str(id)) })
		t.sent = appendValid(t.sent, text)
		chunk(`"text-delta","id":`, str(t.id), `,"delta":`, str(string(text)))
	case agentstream.EventMessageCompleted:
		var d agentstream.MessageCompletedData
		if json.Unmarshal(ev.Data, &d) != nil || d.Role != agentstream.RoleAssistant || e.ended[d.MessageID] {
			break
		}
		i := slices.IndexFunc(e.texts, func(t uiText) bool { return t.id == d.MessageID })
		if i < 0 && d.Content == "" {
			break
		}
		t := e.text(d.MessageID, func(id string) { chunk(`"text-start","id":`, str(id)) })
		// The deltas sent are the content's start but for replaced
		// invalid UTF-8; what they lack is sent, never text twice.
		if rest, ok := bytes.CutPrefix([]byte(d.Content), t.sent); ok && len(rest) > 0 {
			chunk(`"text-delta","id":`, str(t.id), `,"delta":`, str(string(rest)))
		}
		chunk(`"text-end","id":`, str(t.id))
		e.ended[t.id] = true
		e.texts = slices.DeleteFunc(e.texts, func(x uiText) bool { return x.id == d.MessageID })
	case agentstream.EventToolArgumentsDelta:
		var d agentstream.ToolArgumentsDeltaData
		if json.Unmarshal(ev.Data, &d) != nil || e.tools[d.CallID] > uiToolInput {
			break
		}
		if e.tools[d.CallID] == 0 {
			e.tools[d.CallID] = uiToolInput
			chunk(`"tool-input-start","toolCallId":`, str(d.CallID), `,"toolName":`, str(d.Name))
		}
		if d.Delta != "" {
			chunk(`"tool-input-delta","toolCallId":`, str(d.CallID), `,"inputTextDelta":`, str(d.Delta))
		}
	case agentstream.EventToolCall:
		var d agentstream.ToolCallData
		if json.Unmarshal(ev.Data, &d) != nil || e.tools[d.CallID] > uiToolInput {
			break
		}
		e.toolInput(chunk, str, d.CallID, d.Name, d.Arguments)
	case agentstream.EventToolResult:
		var d agentstream.ToolResultData
		if json.Unmarshal(ev.Data, &d) != nil || e.tools[d.CallID] == uiToolDone {
			break
		}
		if e.tools[d.CallID] < uiToolAvailable {
			// Its call was not seen (a stream resumed past a log's
			// trimmed start): the client needs the call to show a result.
			e.toolInput(chunk, str, d.CallID, d.Name, nil)
		}
		e.tools[d.CallID] = uiToolDone
		if d.IsError {
			chunk(`"tool-output-error","toolCallId":`, str(d.CallID), `,"errorText":`, str(d.Output))
		} else {
			chunk(`"tool-output-available","toolCallId":`, str(d.CallID), `,"output":`, str(d.Output))
		}
	case agentstream.EventRunCompleted, agentstream.EventRunFailed, agentstream.EventRunCancelled, agentstream.EventRunInterrupted:
		endTexts()
		if e.stepOpen {
			e.stepOpen = false
			chunk(`"finish-step"`)
		}
		switch ev.Type {
		case agentstream.EventRunCancelled:
			chunk(`"abort"`)
		case agentstream.EventRunFailed, agentstream.EventRunInterrupted:
			var d agentstream.RunEndData
			_ = json.Unmarshal(ev.Data, &d)
			msg := "the run ended without an answer (" + string(ev.Type) + ")"
			if d.Error != nil && d.Error.Message != "" {
				msg = d.Error.Message
			}
			chunk(`"error","errorText":`, str(msg))
		}
		chunk(`"finish"`)
	}
	if last >= from && ev.Seq > 0 {
		id := strconv.AppendInt([]byte("id: "), ev.Seq, 10)
		buf = slices.Insert(buf, last, append(id, '\n')...)
	}
	return buf
}

// text returns the open text of message id, opening it (start writes its
// text-start) when it is not.
func (e *ui) text(id string, start func(string)) *uiText {
	for i := range e.texts {
		if e.texts[i].id == id {
			return &e.texts[i]
		}
	}
	start(id)
	e.texts = append(e.texts, uiText{id: id})
	return &e.texts[len(e.texts)-1]
}

// toolInput writes a call's tool-input-start, unless its argument deltas
// did, and its tool-input-available with args (the JSON of the call's
// arguments; nil when not known, written as {}).
func (e *ui) toolInput(chunk func(...string), str func(string) string, callID, name string, args json.RawMessage) {
	if e.tools[callID] == 0 {
		chunk(`"tool-input-start","toolCallId":`, str(callID), `,"toolName":`, str(name))
	}
	e.tools[callID] = uiToolAvailable
	input := []byte("{}")
	var c bytes.Buffer
	if len(args) > 0 && json.Compact(&c, args) == nil {
		input = c.Bytes()
	}
	chunk(`"tool-input-available","toolCallId":`, str(callID), `,"toolName":`, str(name), `,"input":`, string(input))
}

// appendValid appends b with each byte of invalid UTF-8 replaced by
// U+FFFD, as encoding/json writes it: the text a client got.
func appendValid(dst, b []byte) []byte {
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		if r == utf8.RuneError && size == 1 {
			dst = utf8.AppendRune(dst, r)
		} else {
			dst = append(dst, b[:size]...)
		}
		b = b[size:]
	}
	return dst
}
