package sim

import (
	"fmt"
	"strconv"
	"time"
)

// Fault is a failure the simulator answers with instead of a good reply.
type Fault string

// Faults. A status fault is any HTTP error status written as its number,
// "400" to "599"; Fault429 and Fault500 are the usual ones.
const (
	// FaultNone is no fault. In a Behavior it says "no fault" explicitly,
	// where the empty Fault inherits the request's fault (from Options or
	// the X-Sim-Fault header); in Options and headers "" and FaultNone are
	// the same.
	FaultNone Fault = "none"
	// Fault429 answers 429 with an OpenAI-style rate-limit error body and
	// the retry headers (see Options.RetryAfter), before any stream.
	Fault429 Fault = "429"
	// Fault500 answers 500 with an OpenAI-style server error body, before
	// any stream.
	Fault500 Fault = "500"
	// FaultCut streams FaultAfter tokens, then closes the connection
	// abruptly: no final chunk, no [DONE], no terminating HTTP chunk, so the
	// client's read of the body fails (io.ErrUnexpectedEOF) rather than
	// ending cleanly. A non-streamed reply is cut halfway through its body.
	FaultCut Fault = "cut"
	// FaultStall streams FaultAfter tokens, then sends nothing more until
	// the client goes away or the server is closed. A non-streamed reply
	// sends nothing at all.
	FaultStall Fault = "stall"
)

// Status returns the HTTP status of a status fault, or 0.
func (f Fault) Status() int {
	if len(f) != 3 {
		return 0
	}
	n, err := strconv.Atoi(string(f))
	if err != nil || n < 400 || n > 599 {
		return 0
	}
	return n
}

// valid reports whether f is a known fault or a status fault.
func (f Fault) valid() bool {
	switch f {
	case "", FaultNone, FaultCut, FaultStall:
		return true
	}
	return f.Status() != 0
}

// active reports whether f is an actual fault (not empty, not none).
func (f Fault) active() bool { return f != "" && f != FaultNone }

// Options configure a Server. The zero value is usable: every zero field
// takes its default. Durations follow one convention: zero means the
// default, a negative value means none (so Pace: -1 streams as fast as the
// connection allows).
type Options struct {
	// Tokens is the length in tokens of the default generated reply; one
	// token is one streamed content chunk. Default 20.
	Tokens int
	// Pace is the time between two tokens. Default 20ms; negative for none.
	Pace time.Duration
	// TTFT is the time to the first token: the reply's headers and first
	// chunk are sent after it. Default 50ms; negative for none.
	TTFT time.Duration
	// ArgChunk is how many bytes of a tool call's arguments each streamed
	// chunk carries (rounded up to whole UTF-8 characters). Default 4, so
	// arguments arrive split across many chunks.
	ArgChunk int

	// Fault is the fault chat requests are answered with. Default none.
	Fault Fault
	// FaultAfter is how many tokens a cut or stalled stream sends before
	// the fault (tool-call argument pieces count as tokens). Default 0.
	FaultAfter int
	// FailFirst is how many chat requests get Fault before the server
	// answers normally; 0 means all of them. Reset starts the count again.
	// A fault set by a header or by Decide does not count.
	FailFirst int
	// RetryAfter is the delay a 429 fault asks the client to wait, sent as
	// Retry-After-Ms (milliseconds, which the OpenAI SDKs prefer) and
	// Retry-After (whole seconds, rounded down, so usually "0"). Default
	// 10ms; negative for 0.
	RetryAfter time.Duration

	// Decide, when set, scripts the reply to each chat request. Zero fields
	// of the Behavior it returns inherit from Options and the request's
	// X-Sim-* headers; when its Text and ToolCalls are both empty the
	// default policy chooses the content (see Default). Nil means the
	// default policy for every request. It is called concurrently.
	Decide func(r *Request) Behavior

	// Models are model ids GET /v1/models lists besides "sim". Chat
	// requests are answered whatever model they name.
	Models []string
	// Record is how many of the latest chat requests Requests keeps.
	// Default 1000; negative keeps none (for long load tests).
	Record int
	// Stamp makes the default generated reply carry the time each token
	// is sent, instead of words: see AppendStampToken. It applies only to
	// the default generated text (DefaultText), not to a Decide's Text or
	// to the answer to tool results. Default false.
	Stamp bool
	// Lenient turns off the checks of the conversation's shape that
	// OpenAI makes (known roles, tool messages answering the preceding
	// assistant's tool calls and every tool call answered, tool names,
	// temperature range). Malformed JSON, a missing model and an empty
	// messages array are always rejected. Default false: strict, so a
	// client bug that OpenAI would reject fails against the simulator too.
	Lenient bool
}

// Defaults of Options.
const (
	DefaultTokens     = 20
	DefaultPace       = 20 * time.Millisecond
	DefaultTTFT       = 50 * time.Millisecond
	DefaultArgChunk   = 4
	DefaultRetryAfter = 10 * time.Millisecond
	DefaultRecord     = 1000
)

// WithDefaults returns o with every zero field set to its default. Negative
// durations are kept: they mean none. It is idempotent.
func (o Options) WithDefaults() Options {
	if o.Tokens <= 0 {
		o.Tokens = DefaultTokens
	}
	if o.Pace == 0 {
		o.Pace = DefaultPace
	}
	if o.TTFT == 0 {
		o.TTFT = DefaultTTFT
	}
	if o.ArgChunk <= 0 {
		o.ArgChunk = DefaultArgChunk
	}
	if o.RetryAfter == 0 {
		o.RetryAfter = DefaultRetryAfter
	}
	if o.Record == 0 {
		o.Record = DefaultRecord
	}
	if o.Fault == "" {
		o.Fault = FaultNone
	}
	if o.FaultAfter < 0 {
		o.FaultAfter = 0
	}
	if o.FailFirst < 0 {
		o.FailFirst = 0
	}
	return o
}

// Validate reports options that cannot work: an unknown Fault.
func (o Options) Validate() error {
	if !o.Fault.valid() {
		return fmt.Errorf("sim: unknown fault %q (want none, cut, stall or an HTTP status 400-599)", o.Fault)
	}
	return nil
}

// Behavior is what the simulator answers one chat request with. Zero fields
// inherit the request's settings (Options, then X-Sim-* headers); durations
// follow the Options convention (negative means none).
type Behavior struct {
	// Text is the reply text, streamed one word (with its following
	// whitespace) per chunk. When Text and ToolCalls are both empty the
	// default policy chooses the content.
	Text string
	// Tokens is the length of the default generated text; ignored when
	// Text is set.
	Tokens int
	Pace   time.Duration
	TTFT   time.Duration
	// ToolCalls are the tool calls of the reply, streamed after Text.
	ToolCalls []ToolCallSpec
	// ArgChunk is how many bytes of arguments each streamed chunk carries.
	ArgChunk int
	// Fault is the fault to answer with; FaultNone overrides an inherited
	// fault.
	Fault Fault
	// FaultAfter is how many tokens a cut or stall sends first; negative
	// for 0 (zero inherits).
	FaultAfter int
}

// ToolCallSpec is one tool call of a Behavior.
type ToolCallSpec struct {
	// ID is the call's id; empty means a generated "call_…" id.
	ID   string
	Name string
	// Arguments is sent verbatim, so it may be invalid JSON.
	Arguments string
}
