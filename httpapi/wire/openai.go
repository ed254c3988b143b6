package wire

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/internal/jsonstr"
)

// openAI is OpenAI's Chat Completions stream: chat.completion.chunk
// objects as data lines, each with the run's event id, then data: [DONE].
// The client sees the run's answer: the text of its assistant messages,
// one after another (a blank line between two messages with text), never
// its tool calls, which ran on the server. The first chunk has
// delta.role "assistant"; run.completed makes the chunk with
// finish_reason, and the usage chunk (empty choices) when asked for; a
// run that fails, is cancelled or interrupted ends with an
// {"error": {...}} data line, which OpenAI's SDKs raise as an error.
type openAI struct {
	// head opens every chunk: data: {"id",…,"choices":[.
	head         []byte
	includeUsage bool
	// opened: the role chunk was written (or a resumed reader had it).
	opened bool
	// text is the answer's state: cur is the message whose text was
	// streamed last, sent that text so far; anyText says some message
	// had text (the next one is set off by a blank line).
	text answerText
	// finish is the finish_reason of the run's last model call.
	finish string
}

// NewOpenAI makes an encoder of the openai format without the usage
// chunk: what GET /v1/runs/{id}/events?format=openai serves.
func NewOpenAI(s Stream) Encoder { return NewOpenAIStream(s, false) }

// NewOpenAIStream makes an encoder of the openai format, with the usage
// chunk (empty choices) after the finish chunk when includeUsage
// (stream_options.include_usage).
func NewOpenAIStream(s Stream, includeUsage bool) Encoder {
	h := append([]byte(nil), `data: {"id":`...)
	h = jsonstr.Append(h, OpenAICompletionID(s.RunID), false)
	h = append(h, `,"object":"chat.completion.chunk","created":`...)
	h = strconv.AppendInt(h, created(s), 10)
	h = append(h, `,"model":`...)
	h = jsonstr.Append(h, s.Agent, false)
	h = append(h, `,"choices":[`...)
	return &openAI{head: h, includeUsage: includeUsage}
}

// OpenAICompletionID is the id of the completion a run answers: the same
// in every chunk and every stream of the run.
func OpenAICompletionID(runID string) string { return "chatcmpl-" + runID }

func created(s Stream) int64 {
	if s.Created.IsZero() {
		return 0
	}
	return s.Created.Unix()
}

func (*openAI) Header(h http.Header) { SSEHeader(h) }

// Start is nothing: OpenAI's streams begin with their first chunk.
func (*openAI) Start(buf []byte) []byte { return buf }

// Heartbeat is a comment line, which OpenAI's SDKs skip.
func (*openAI) Heartbeat(buf []byte) []byte { return append(buf, ": heartbeat\n\n"...) }

func (*openAI) End(buf []byte) []byte { return append(buf, "data: [DONE]\n\n"...) }

// Skip keeps the state of the events a resumed reader already had.
func (e *openAI) Skip(ev agentstream.Event) { _ = e.Encode(nil, ev) }

func (e *openAI) Encode(buf []byte, ev agentstream.Event) []byte {
	if !e.opened {
		e.opened = true
		buf = AppendID(buf, ev.Seq)
		buf = append(buf, e.head...)
		buf = append(buf, `{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}`+"\n\n"...)
	}
	if text, ok := e.text.add(ev); ok {
		buf = AppendID(buf, ev.Seq)
		buf = append(buf, e.head...)
		buf = append(buf, `{"index":0,"delta":{"content":`...)
		buf = jsonstr.Append(buf, bytesString(text), false)
		return append(buf, "},\"finish_reason\":null}]}\n\n"...)
	}
	switch ev.Type {
	case agentstream.EventStepCompleted:
		var d agentstream.StepCompletedData
		if json.Unmarshal(ev.Data, &d) == nil {
			e.finish = d.FinishReason
		}
	case agentstream.EventRunCompleted:
		var d agentstream.RunEndData
		_ = json.Unmarshal(ev.Data, &d)
		buf = AppendID(buf, ev.Seq)
		buf = append(buf, e.head...)
		buf = append(buf, `{"index":0,"delta":{},"finish_reason":`...)
		buf = jsonstr.Append(buf, OpenAIFinishReason(e.finish), false)
		buf = append(buf, "}]}\n\n"...)
		if e.includeUsage {
			buf = append(buf, e.head...)
			buf = append(buf, `],"usage":`...)
			u, _ := json.Marshal(NewOpenAIUsage(d.Usage))
			buf = append(buf, u...)
			buf = append(buf, "}\n\n"...)
		}
	case agentstream.EventRunFailed, agentstream.EventRunCancelled, agentstream.EventRunInterrupted:
		var d agentstream.RunEndData
		_ = json.Unmarshal(ev.Data, &d)
		info := agentstream.ErrorInfo{Code: agentstream.CodeInternal, Message: "the run ended without an answer"}
		if d.Error != nil {
			info = *d.Error
		}
		b, _ := json.Marshal(NewOpenAIError(info.Code, info.Message))
		buf = AppendID(buf, ev.Seq)
		buf = append(buf, "data: "...)
		buf = append(buf, b...)
		buf = append(buf, "\n\n"...)
	}
	return buf
}

// answerText follows the text of a run's assistant messages, from their
// deltas, or from message.completed for a message whose deltas were not
// seen (an end rebuilt from the store).
type answerText struct {
	cur, sent []byte
	anyText   bool
	// scratch holds one decoded delta; out the text add returns.
	scratch, out []byte
}

// add returns the text ev adds to the answer, if any. The text is valid
// until the next call.
func (a *answerText) add(ev agentstream.Event) ([]byte, bool) {
	switch ev.Type {
	case agentstream.EventMessageDelta:
		text, id, ok := DecodeDelta(a.scratch[:0], ev.Data)
		a.scratch = text
		if !ok || len(text) == 0 {
			return nil, false
		}
		return a.more(id, text), true
	case agentstream.EventMessageCompleted:
		var d agentstream.MessageCompletedData
		if json.Unmarshal(ev.Data, &d) != nil || d.Role != agentstream.RoleAssistant {
			return nil, false
		}
		var rest []byte
		switch {
		case string(a.cur) != d.MessageID:
			rest = []byte(d.Content)
		case bytes.HasPrefix([]byte(d.Content), a.sent):
			rest = []byte(d.Content)[len(a.sent):]
		}
		if len(rest) == 0 {
			a.done()
			return nil, false
		}
		out := a.more([]byte(d.MessageID), rest)
		a.done()
		return out, true
	}
	return nil, false
}

// more records text as message id's next and returns what the client
// gets: the text, after a blank line when it starts a message and an
// earlier one had text.
func (a *answerText) more(id, text []byte) []byte {
	a.out = a.out[:0]
	if !bytes.Equal(id, a.cur) {
		a.cur = append(a.cur[:0], id...)
		a.sent = a.sent[:0]
	}
	if len(a.sent) == 0 && a.anyText {
		a.out = append(a.out, "\n\n"...)
	}
	a.anyText = true
	a.sent = append(a.sent, text...)
	a.out = append(a.out, text...)
	return a.out
}

// done forgets the message that was streamed: it is complete.
func (a *answerText) done() { a.cur, a.sent = a.cur[:0], a.sent[:0] }

// OpenAIAnswer is what a whole (non-streamed) chat.completion holds of a
// run: the events given to Add, in order, make the same text the openai
// stream sends, and its finish.
type OpenAIAnswer struct {
	text    answerText
	content []byte
	finish  string
	// End is the terminal event's data, once added.
	End *agentstream.RunEndData
}

// Add takes the run's next event.
func (a *OpenAIAnswer) Add(ev agentstream.Event) {
	if text, ok := a.text.add(ev); ok {
		a.content = append(a.content, text...)
		return
	}
	switch {
	case ev.Type == agentstream.EventStepCompleted:
		var d agentstream.StepCompletedData
		if json.Unmarshal(ev.Data, &d) == nil {
			a.finish = d.FinishReason
		}
	case ev.Type.Terminal():
		var d agentstream.RunEndData
		_ = json.Unmarshal(ev.Data, &d)
		a.End = &d
	}
}

// Content is the answer's text.
func (a *OpenAIAnswer) Content() string { return string(a.content) }

// FinishReason is the completion's finish_reason.
func (a *OpenAIAnswer) FinishReason() string { return OpenAIFinishReason(a.finish) }

// OpenAIFinishReason is the finish_reason the client is shown for the
// run's last model call's: "length" and "content_filter" as they are,
// anything else "stop" (a run ends when the model stops calling tools;
// its tool calls are not the client's).
func OpenAIFinishReason(r string) string {
	switch r {
	case "length", "content_filter":
		return r
	}
	return "stop"
}

// OpenAIUsage is a completion's usage in OpenAI's shape.
type OpenAIUsage struct {
	PromptTokens     int64 `json:"prompt_tokens"`
	CompletionTokens int64 `json:"completion_tokens"`
	TotalTokens      int64 `json:"total_tokens"`
}

// NewOpenAIUsage is u in OpenAI's shape.
func NewOpenAIUsage(u agentstream.Usage) OpenAIUsage {
	in, out := int64(u.InputTokens), int64(u.OutputTokens)
	return OpenAIUsage{PromptTokens: in, CompletionTokens: out, TotalTokens: in + out}
}

// OpenAIErrorBody is an error in OpenAI's shape, as its SDKs read it.
type OpenAIErrorBody struct {
	Error OpenAIErrorInfo `json:"error"`
}

// OpenAIErrorInfo is the error object of OpenAIErrorBody: the message,
// OpenAI's error type, the parameter at fault (none here) and
// agentstream's error code.
type OpenAIErrorInfo struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    string  `json:"code"`
}

// NewOpenAIError is the error of code with message in OpenAI's shape.
func NewOpenAIError(code agentstream.Code, message string) OpenAIErrorBody {
	return OpenAIErrorBody{Error: OpenAIErrorInfo{Message: message, Type: openAIErrorType(code), Code: string(code)}}
}

// openAIErrorType is OpenAI's error type of an agentstream error code.
func openAIErrorType(code agentstream.Code) string {
	switch code {
	case agentstream.CodeInvalidRequest, agentstream.CodeTooLarge, agentstream.CodeNotFound, agentstream.CodeConflict,
		agentstream.CodeGone, agentstream.CodeMaxTurns, "method_not_allowed", "request_timeout":
		return "invalid_request_error"
	case agentstream.CodeUnauthorized:
		return "authentication_error"
	case agentstream.CodeOverloaded, agentstream.CodeRateLimited:
		return "rate_limit_error"
	}
	return "server_error"
}
