package wire

import (
	"bytes"
	"encoding/json"
	"net/http"
	"unsafe"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/internal/jsonstr"
)

// seed is the contract of the original Django view: data-only lines with
// delta, tool start/end, the whole response, then done. No ids, no event
// names, no comments: its clients may parse every non-empty line as data.
type seed struct {
	threadID, runID string
	// answer is the run's text so far: every message's deltas, each
	// message's replaced by its message.completed content when that comes
	// (so an end rebuilt from the store, or a resumed stream, still
	// answers with the whole response). cur is the id of the message whose
	// deltas end answer, starting at curStart.
	answer   []byte
	cur      []byte
	curStart int
	// scratch holds one decoded delta.
	scratch []byte
}

// NewSeed makes an encoder of the seed format.
func NewSeed(s Stream) Encoder { return &seed{threadID: s.ThreadID, runID: s.RunID} }

func (*seed) Header(h http.Header) { SSEHeader(h) }

// Start is nothing: the original view sent nothing but data lines.
func (*seed) Start(buf []byte) []byte { return buf }

// Heartbeat is nothing, for the same reason.
func (*seed) Heartbeat(buf []byte) []byte { return buf }

var seedDone = []byte("data: {\"status\":\"done\"}\n\n")

func (*seed) End(buf []byte) []byte { return append(buf, seedDone...) }

// Skip keeps the answer of the events a resumed stream already sent.
func (e *seed) Skip(ev agentstream.Event) {
	switch ev.Type {
	case agentstream.EventMessageDelta:
		_, _ = e.addDelta(ev.Data)
	case agentstream.EventMessageCompleted:
		_ = e.Encode(nil, ev) // writes nothing
	}
}

// addDelta adds a delta's text to the answer and returns it.
func (e *seed) addDelta(data []byte) ([]byte, bool) {
	text, id, ok := DecodeDelta(e.scratch[:0], data)
	e.scratch = text
	if !ok {
		return nil, false
	}
	if !bytes.Equal(id, e.cur) {
		e.cur = append(e.cur[:0], id...)
		e.curStart = len(e.answer)
	}
	e.answer = append(e.answer, text...)
	return text, true
}

func (e *seed) Encode(buf []byte, ev agentstream.Event) []byte {
	switch ev.Type {
	case agentstream.EventMessageDelta:
		text, ok := e.addDelta(ev.Data)
		if !ok {
			return buf
		}
		buf = append(buf, `data: {"delta":`...)
		buf = jsonstr.Append(buf, bytesString(text), true)
		return append(buf, ",\"complete\":false}\n\n"...)
	case agentstream.EventMessageCompleted:
		var d agentstream.MessageCompletedData
		if json.Unmarshal(ev.Data, &d) != nil || d.Role != agentstream.RoleAssistant {
			return buf
		}
		if string(e.cur) == d.MessageID {
			e.answer = e.answer[:e.curStart]
		}
		e.answer = append(e.answer, d.Content...)
		e.cur = e.cur[:0]
		return buf
	case agentstream.EventToolCall, agentstream.EventToolResult:
		var d struct {
			Name string `json:"name"`
		}
		if json.Unmarshal(ev.Data, &d) != nil {
			return buf
		}
		status := "start"
		if ev.Type == agentstream.EventToolResult {
			status = "end"
		}
		return appendData(buf, seedTool{Tool: d.Name, Status: status})
	case agentstream.EventRunCompleted:
		return appendData(buf, seedResponse{Response: string(e.answer), Complete: true, ThreadID: e.threadID, RunID: e.runID})
	case agentstream.EventRunFailed, agentstream.EventRunCancelled, agentstream.EventRunInterrupted:
		var d agentstream.RunEndData
		_ = json.Unmarshal(ev.Data, &d)
		msg, code := "the run ended without an answer", string(agentstream.CodeInternal)
		if d.Error != nil {
			msg, code = d.Error.Message, string(d.Error.Code)
		}
		return appendData(buf, seedError{Error: msg, Code: code, ThreadID: e.threadID, RunID: e.runID})
	}
	return buf
}

type (
	seedTool struct {
		Tool   string `json:"tool"`
		Status string `json:"status"`
	}
	seedResponse struct {
		Response string `json:"response"`
		Complete bool   `json:"complete"`
		ThreadID string `json:"thread_id"`
		RunID    string `json:"run_id"`
	}
	seedError struct {
		Error    string `json:"error"`
		Code     string `json:"code"`
		ThreadID string `json:"thread_id"`
		RunID    string `json:"run_id"`
	}
)

// bytesString is b as a string without a copy, for a call that reads it
// and keeps nothing of it (jsonstr.Append).
func bytesString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

func appendData(buf []byte, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		return buf
	}
	buf = append(buf, "data: "...)
	buf = append(buf, b...)
	return append(buf, "\n\n"...)
}
