// Package wire holds agentstream's wire formats: how the events of a run's
// log are written to an HTTP client as one stream. Each format is an
// Encoder, made for one stream by the NewEncoder registered under the
// format's name (the ?format= of GET /v1/runs/{id}/events). The HTTP
// layer (httpapi) owns the connection: it sets the headers every stream
// has (X-Run-Id, X-Thread-Id), reads the log, flushes, times heartbeats
// and rebuilds a finished run's end from the store; an Encoder only turns
// events into bytes, with no I/O.
//
// A stream is written as
//
//	Header, Start, (Encode | Heartbeat)*, then End right after the
//	terminal event's Encode
//
// so End is written exactly once, and only when the run's end was sent. A
// stream resumed after event N (Last-Event-ID) is the rest of the stream
// one that began at the first event would have written: before Start,
// the encoder is shown events 1…N through Skip when it implements
// Skipper, so a format whose bytes depend on earlier events (the seed's
// whole answer, an open message) picks up where the reader left.
//
// Events arrive either from a live log (ids 1, 2, 3… without gaps) or as
// a finished run's end rebuilt from the store: message.completed events
// with Seq 0 (their ids are not known), then the terminal event at its id.
// A format that allows SSE ids writes each event's Seq as its id: line
// (AppendID), and none for Seq 0, so an EventSource keeps the last id it
// had.
package wire

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/agentstream/agentstream"
)

// Stream is what an encoder knows of the stream it writes.
type Stream struct {
	// RunID is the run's id.
	RunID string
	// ThreadID is the thread's id as the client knows it: the one it
	// chose, or the server's thr_… (what X-Thread-Id shows).
	ThreadID string
	// Agent is the name of the run's agent.
	Agent string
	// Created is when the run was created (the openai format's created).
	Created time.Time
}

// Encoder writes one stream of a run in one format. Its methods append to
// buf and return it; they are called from one goroutine.
type Encoder interface {
	// Header sets the format's response headers: Content-Type, caching,
	// and any header of its own.
	Header(h http.Header)
	// Start appends what opens the stream (native: the ": ok" comment
	// line), possibly nothing. It is flushed at once with the headers.
	Start(buf []byte) []byte
	// Encode appends the wire form of ev, possibly nothing.
	Encode(buf []byte, ev agentstream.Event) []byte
	// Heartbeat appends what keeps a silent stream open through proxies
	// (a comment line), or nothing for a format whose clients would not
	// take one.
	Heartbeat(buf []byte) []byte
	// End appends what closes the stream after its terminal event
	// (data: [DONE], the seed's done line), possibly nothing.
	End(buf []byte) []byte
}

// Skipper is an Encoder whose bytes depend on events before those it
// writes. A stream resumed after event N shows it events 1…N (as far as
// the log still holds them) through Skip, before Start.
type Skipper interface {
	Skip(ev agentstream.Event)
}

// NewEncoder makes the encoder of one stream.
type NewEncoder func(Stream) Encoder

// formats are the wire formats by the name ?format= takes. A format is
// added here, one line, beside its own file.
var formats = map[string]NewEncoder{
	"native": NewNative,
	"seed":   NewSeed,
	"ag-ui":  NewAGUI,
	"ui":     NewUI,
	"openai": NewOpenAI,
}

// Lookup returns the format named name; an unknown name is an
// invalid_request error naming the known ones.
func Lookup(name string) (NewEncoder, error) {
	if f, ok := formats[name]; ok {
		return f, nil
	}
	return nil, agentstream.Errorf(agentstream.CodeInvalidRequest,
		"format must be one of %s, not %q", strings.Join(Names(), ", "), name)
}

// Names lists the known formats, sorted.
func Names() []string {
	names := make([]string, 0, len(formats))
	for n := range formats {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// EncodeEvent appends ev, and the end of the stream when ev is the
// terminal event: every writer of a stream goes through it, so End comes
// exactly once, right after the terminal event.
func EncodeEvent(enc Encoder, buf []byte, ev agentstream.Event) []byte {
	buf = enc.Encode(buf, ev)
	if ev.Type.Terminal() {
		buf = enc.End(buf)
	}
	return buf
}

// SSEHeader sets the headers of every Server-Sent Events stream: its
// Content-Type, and no caching or buffering by proxies.
func SSEHeader(h http.Header) {
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
}

// AppendID appends the id: line of an event with id seq, or nothing for
// an event rebuilt from the store whose id is not known (seq 0): an
// EventSource then keeps the last id it had.
func AppendID(buf []byte, seq int64) []byte {
	if seq <= 0 {
		return buf
	}
	buf = append(buf, "id: "...)
	buf = strconv.AppendInt(buf, seq, 10)
	return append(buf, '\n')
}
