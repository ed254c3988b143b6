package agentstream

import (
	"encoding/json"

	"github.com/agentstream/agentstream/internal/jsonstr"
)

// EventType names an event in a run's log. The names are the native wire
// format's `event:` field.
type EventType string

// Event types, in the order a run produces them.
const (
	EventRunCreated         EventType = "run.created"
	EventRunQueued          EventType = "run.queued"
	EventRunStarted         EventType = "run.started"
	EventStepStarted        EventType = "step.started"
	EventMessageDelta       EventType = "message.delta"
	EventToolArgumentsDelta EventType = "tool.arguments.delta"
	EventToolCall           EventType = "tool.call"
	EventToolResult         EventType = "tool.result"
	EventMessageCompleted   EventType = "message.completed"
	EventStepCompleted      EventType = "step.completed"
	EventRunCompleted       EventType = "run.completed"
	EventRunFailed          EventType = "run.failed"
	EventRunCancelled       EventType = "run.cancelled"
	EventRunInterrupted     EventType = "run.interrupted"
)

// Terminal reports whether the event ends a run's log.
func (t EventType) Terminal() bool {
	switch t {
	case EventRunCompleted, EventRunFailed, EventRunCancelled, EventRunInterrupted:
		return true
	}
	return false
}

// TerminalEventFor returns the terminal event type of a terminal run status.
func TerminalEventFor(s RunStatus) EventType {
	switch s {
	case RunCompleted:
		return EventRunCompleted
	case RunCancelled:
		return EventRunCancelled
	case RunInterrupted:
		return EventRunInterrupted
	}
	return EventRunFailed
}

// Event is one entry of a run's log. Data is the event's JSON payload
// exactly as the native wire format sends it; it is encoded once, when the
// event is made, and read-only from then on: readers may share it (the
// in-process log keeps a message.delta's text compactly and builds its
// data again, byte for byte, for a read). Seq is assigned by the log on
// append, from 1 without gaps.
type Event struct {
	Seq  int64
	Type EventType
	Data json.RawMessage
}

// eventOverhead is what Size adds to an event's Type and Data bytes.
const eventOverhead = 48

// Size is the number of bytes the event counts against an EventLog's size
// caps: len(Type) + len(Data) + 48, the 48 standing for the Event struct
// itself (its Seq and the headers of Type and Data). Every EventLog counts
// events this way, so a cap keeps the same events whichever log holds them.
func (e Event) Size() int64 {
	return int64(len(e.Type)+len(e.Data)) + eventOverhead
}

// NewEvent encodes payload as the data of an event of type t.
func NewEvent(t EventType, payload any) Event {
	data, err := json.Marshal(payload)
	if err != nil {
		// Payloads are the structs below; they always encode.
		panic("agentstream: encoding event payload: " + err.Error())
	}
	return Event{Type: t, Data: data}
}

// NewDeltaEvent is NewEvent(EventMessageDelta, MessageDeltaData{…}),
// made for every streamed token: the payload is encoded by hand, byte for
// byte as encoding/json encodes it (TestDeltaEvent, FuzzDeltaEvent),
// without reflection or boxing the payload in an interface.
//
// A log that keeps events as appended (redislog's, until Redis has them)
// keeps the data a token at a time, so it is allocated at its exact
// length: encoded first in a buffer on the stack, it takes the heap's
// next size up (64 bytes for a token of up to 7 ASCII characters with a
// 30-character message id), where room for escapes would make every one
// 80. The in-process log copies the text it keeps: there the data is
// garbage once the run has delivered it.
func NewDeltaEvent(messageID, delta string) Event {
	var buf [128]byte
	b := appendDelta(buf[:0], messageID, delta)
	if len(b) > len(buf) {
		// Longer than the stack's buffer: encoded again, on the heap.
		return Event{Type: EventMessageDelta, Data: appendDelta(make([]byte, 0, len(b)), messageID, delta)}
	}
	return Event{Type: EventMessageDelta, Data: append([]byte(nil), b...)}
}

// appendDelta appends the data of a message.delta event to dst.
func appendDelta(dst []byte, messageID, delta string) []byte {
	dst = append(dst, `{"message_id":`...)
	dst = jsonstr.Append(dst, messageID, true)
	dst = append(dst, `,"delta":`...)
	dst = jsonstr.Append(dst, delta, true)
	return append(dst, '}')
}

// Payloads of each event type.
type (
	// RunCreatedData is the payload of run.created.
	RunCreatedData struct {
		RunID    string    `json:"run_id"`
		ThreadID string    `json:"thread_id"`
		Agent    string    `json:"agent"`
		Status   RunStatus `json:"status"`
	}
	// RunQueuedData is the payload of run.queued: Position 1 runs next.
	RunQueuedData struct {
		Position int `json:"position"`
	}
	// RunStartedData is the payload of run.started.
	RunStartedData struct {
		RunID string `json:"run_id"`
	}
	// StepStartedData is the payload of step.started, sent as each model
	// call starts: Step counts the run's model calls from 1; MessageID is
	// the assistant message the call writes (its message.delta events').
	StepStartedData struct {
		Step      int    `json:"step"`
		MessageID string `json:"message_id"`
	}
	// StepCompletedData is the payload of step.completed, sent when a
	// model call answered in full (a call that fails ends the run
	// instead): FinishReason is the model's ("stop", "tool_calls",
	// "length", …), Usage that call's tokens, absent when the model did
	// not report them.
	StepCompletedData struct {
		Step         int    `json:"step"`
		MessageID    string `json:"message_id"`
		FinishReason string `json:"finish_reason"`
		Usage        *Usage `json:"usage,omitempty"`
	}
	// MessageDeltaData is the payload of message.delta.
	MessageDeltaData struct {
		MessageID string `json:"message_id"`
		Delta     string `json:"delta"`
	}
	// ToolArgumentsDeltaData is the payload of tool.arguments.delta.
	ToolArgumentsDeltaData struct {
		CallID string `json:"call_id"`
		Name   string `json:"name"`
		Delta  string `json:"delta"`
	}
	// ToolCallData is the payload of tool.call. Arguments is the parsed
	// JSON object, or a JSON string holding the model's text when that
	// text was not valid JSON.
	ToolCallData struct {
		CallID    string          `json:"call_id"`
		Name      string          `json:"name"`
		Arguments json.RawMessage `json:"arguments"`
	}
	// ToolResultData is the payload of tool.result.
	ToolResultData struct {
		CallID     string `json:"call_id"`
		Name       string `json:"name"`
		Output     string `json:"output"`
		IsError    bool   `json:"is_error"`
		DurationMS int64  `json:"duration_ms"`
	}
	// MessageCompletedData is the payload of message.completed.
	MessageCompletedData struct {
		MessageID string `json:"message_id"`
		Role      Role   `json:"role"`
		Content   string `json:"content"`
	}
	// RunEndData is the payload of the terminal events.
	RunEndData struct {
		RunID  string     `json:"run_id"`
		Status RunStatus  `json:"status"`
		Usage  Usage      `json:"usage"`
		Error  *ErrorInfo `json:"error,omitempty"`
	}
)
