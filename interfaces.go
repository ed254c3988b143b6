package agentstream

import (
	"context"
	"encoding/json"
	"time"
)

// Store persists threads, messages and runs. Implementations return *Error
// values (ErrNotFound, ErrConflict, …) for domain failures and are safe for
// concurrent use.
//
// Every store keeps the same values: CreateThread and CreateRun refuse,
// with ErrInvalid and nothing written, what Thread.Check, Run.Check and
// Message.Check refuse (an ID over MaxIDBytes, text that is not valid
// UTF-8 or holds a NUL character), and every method that writes messages
// refuses their IDs the same way. A lookup by an ID no store can hold
// (!ValidText) is ErrNotFound without a query.
type Store interface {
	// CreateThread inserts t, ClientID included. ErrConflict when a thread
	// with its ID exists (whoever owns it).
	CreateThread(ctx context.Context, t Thread) error
	// GetThread returns the thread whose ID (its key) is threadID, when it
	// exists and belongs to userID; ErrNotFound otherwise, so a foreign
	// thread looks like a missing one. It does not look threads up by
	// ClientID: the caller derives the key (ThreadKey).
	GetThread(ctx context.Context, userID, threadID string) (Thread, error)
	// ListMessages returns the thread's messages, oldest first (by Seq).
	ListMessages(ctx context.Context, threadID string) ([]Message, error)
	// ListMessagesAfter returns up to limit (> 0) of the thread's
	// messages whose Seq is greater than afterSeq, oldest first (by Seq):
	// a page of ListMessages. No messages and no error for a thread that
	// has none after afterSeq, or does not exist. ErrInvalid when limit
	// is not positive.
	ListMessagesAfter(ctx context.Context, threadID string, afterSeq int64, limit int) ([]Message, error)
	// ListThreads returns up to limit (> 0) of userID's threads, newest
	// first: by CreatedAt descending, then by ID (the key) descending.
	// With after set, only the threads that come after that position in
	// this order: those created earlier, or at the same time with a
	// smaller ID. A page's last thread is the next page's after, so pages
	// neither skip nor repeat a thread, whatever is created meanwhile (a
	// new thread comes before every position already handed out, as long
	// as CreatedAt does not go back). Other users' threads never show.
	// ErrInvalid when limit is not positive.
	ListThreads(ctx context.Context, userID string, after *ListPosition, limit int) ([]Thread, error)
	// UpdateThread applies u to userID's thread threadID in one
	// transaction and returns the thread as stored: Title is replaced when
	// set; each key of Metadata replaces the key of the thread's metadata,
	// or removes it when its value is nil; UpdatedAt is set to u.UpdatedAt.
	// Agent, Context, ClientID and CreatedAt never change. ErrNotFound
	// when the thread does not exist or is another user's; ErrInvalid,
	// with nothing written, when the result is one Thread.Check refuses.
	UpdateThread(ctx context.Context, userID, threadID string, u ThreadUpdate) (Thread, error)
	// DeleteThread deletes userID's thread threadID with its messages and
	// runs, in one transaction. ErrNotFound when the thread does not exist
	// or is another user's; ErrConflict, with nothing deleted, when the
	// thread has a queued or running run (the caller cancels it and waits
	// for its end first).
	DeleteThread(ctx context.Context, userID, threadID string) error
	// ListRuns returns up to limit (> 0) of the thread's runs, newest
	// first, by CreatedAt then ID descending, after the position after
	// (nil: from the newest) as ListThreads does. No runs and no error for
	// a thread that has none or does not exist; the caller checks the user
	// owns the thread (GetThread). ErrInvalid when limit is not positive.
	ListRuns(ctx context.Context, threadID string, after *ListPosition, limit int) ([]Run, error)

	// CreateRun inserts the run and its user input message in one
	// transaction and returns the message with its Seq assigned. The
	// thread's UpdatedAt is set to the run's CreatedAt. ErrNotFound when the
	// thread does not exist; ErrConflict when the thread already has a run
	// that is queued or running, or the run or message ID is taken. The
	// caller checks that run.UserID owns the thread (GetThread).
	// history, when given, is stored before input in the same
	// transaction, in order, under the run: the conversation a client
	// brought to a new thread (POST /v1/chat/completions). A history
	// message Message.Check refuses is ErrInvalid, with nothing written.
	CreateRun(ctx context.Context, run Run, input Message, history ...Message) (Message, error)
	// CreateRunLimited is CreateRun under run.UserID's limits: in the same
	// transaction, before the insert, it counts the user's queued and
	// running runs (of every instance sharing the store) and refuses, with
	// nothing written, ErrTooManyRuns when lim.Active > 0 and they are
	// lim.Active or more, or ErrTooManyQueued when run is queued,
	// lim.Queued > 0 and the user's queued runs are lim.Queued or more.
	// The checks of one user's runs are serialized, so that two callers
	// cannot both take the last place. Zero limits check nothing.
	CreateRunLimited(ctx context.Context, run Run, lim RunLimits, input Message, history ...Message) (Message, error)
	// CreateThreadRun is CreateThread(t) then CreateRunLimited, in one
	// transaction: a new conversation's first run costs one write, and a
	// run refused (limits, or any error) leaves no thread behind. run must
	// be of t (ThreadID and UserID), ErrInvalid otherwise; ErrConflict
	// when t's ID is taken. Nothing is written on any error.
	CreateThreadRun(ctx context.Context, t Thread, run Run, lim RunLimits, input Message, history ...Message) (Message, error)
	// AddUsage adds tokens (> 0) to userID's count of the UTC day that
	// holds at, atomically: callers on several instances add up.
	AddUsage(ctx context.Context, userID string, at time.Time, tokens int64) error
	// Usage returns userID's count of the UTC day that holds at; 0 for a
	// day without any.
	Usage(ctx context.Context, userID string, at time.Time) (int64, error)
	// StartRun marks a queued run running at the given time.
	// ErrNotFound for an unknown run; ErrConflict when it is not queued.
	StartRun(ctx context.Context, runID string, at time.Time) error
	// CheckpointRun saves messages of a running run, in one transaction:
	// a message whose ID is new is appended to the thread (Seq assigned),
	// one whose ID exists is updated in place (content, tool calls, status).
	// Messages go to the run's thread whatever their ThreadID says.
	// ErrNotFound for an unknown run; ErrConflict when the run has ended.
	CheckpointRun(ctx context.Context, runID string, msgs []Message) error
	// CheckpointText saves more of the text of message m of a running
	// run without writing again what is saved: m.Content is the
	// message's text from byte at on (at counts the bytes of the text
	// stored). At 0 it is CheckpointRun(ctx, runID, []Message{m}). Past
	// 0 only the text changes: m.Content is stored after the first at
	// bytes, which must be the whole stored text, or the text stored by
	// an earlier call at the same at, which the longer of the two
	// replaces (a save whose outcome was not known can be made again).
	// Readers see the text whole, the stored text followed by what is
	// appended; CheckpointRun and FinishRun replace it whole, and a run
	// ended as interrupted keeps it. ErrNotFound for an unknown run;
	// ErrConflict when the run is not running or, past 0, when m is not a
	// partial message of the run (only those take text this way) or at is
	// not where its text ends; ErrInvalid
	// for a negative at. Nothing is written on any error.
	CheckpointText(ctx context.Context, runID string, m Message, at int64) error
	// FinishRun saves the run's outcome in one transaction: msgs are saved
	// as in CheckpointRun, then run's Status, Error, Usage, FinishedAt and
	// EndSeq (0: not known) are written, and Owner and LeaseUntil cleared. run.Status must be
	// terminal. ErrNotFound for an unknown run; ErrConflict when the stored
	// run is already terminal (then nothing is written).
	FinishRun(ctx context.Context, run Run, msgs []Message) error
	// InterruptRuns ends every queued or running run as interrupted at the
	// given time, with error e, keeping its messages (a checkpointed
	// partial answer stays partial), and returns those runs as stored.
	// A server whose store no other process uses calls it at start: such
	// runs belonged to a process that died.
	InterruptRuns(ctx context.Context, at time.Time, e ErrorInfo) ([]Run, error)
	// RenewLeases sets LeaseUntil to until on every queued or running run
	// whose Owner is owner, and returns their IDs: a run the owner thinks
	// it holds but that is missing here was taken from it (its lease ran
	// out and another instance interrupted it).
	RenewLeases(ctx context.Context, owner string, until time.Time) ([]string, error)
	// InterruptExpiredRuns ends as interrupted, like InterruptRuns, every
	// queued or running run whose lease ran out before at (LeaseUntil set
	// and earlier than at), and returns those runs as stored. Instances
	// sharing a store call it to end the runs of an instance that died.
	InterruptExpiredRuns(ctx context.Context, at time.Time, e ErrorInfo) ([]Run, error)
	// GetRun returns the run when it exists and belongs to userID.
	GetRun(ctx context.Context, userID, runID string) (Run, error)
	// SetEndSeq records the seq of an ended run's terminal event when none
	// is recorded yet (FinishRun records it with the run's end; a run
	// interrupted by InterruptRuns or InterruptExpiredRuns has none until
	// its terminal event is appended, or a reader fixes it), and returns
	// the seq recorded, this one or an earlier one: the first to record
	// wins, so every reader gives the terminal event the same id.
	// ErrNotFound for an unknown run; ErrConflict when it has not ended.
	SetEndSeq(ctx context.Context, runID string, seq int64) (int64, error)

	// Ping checks the store can be reached.
	Ping(ctx context.Context) error
	// Close releases the store's resources.
	Close() error
}

// RunLimits bound one user's active runs (Store.CreateRunLimited); 0 is
// no limit.
type RunLimits struct {
	// Active bounds the user's queued and running runs.
	Active int
	// Queued bounds the user's queued runs (waiting for a worker).
	Queued int
}

// Refusal is the error a store returns for run when its user already has
// active queued or running runs, queued of them queued: CodeTooManyRuns
// or CodeTooManyQueued past a limit, else nil. Every store counts, then
// asks this, so that all refuse alike.
func (l RunLimits) Refusal(run Run, active, queued int) error {
	switch {
	case l.Active > 0 && active >= l.Active:
		return Errorf(CodeTooManyRuns, "the user has %d queued or running runs (at most %d)", active, l.Active)
	case l.Queued > 0 && run.Status == RunQueued && queued >= l.Queued:
		return Errorf(CodeTooManyQueued, "the user has %d queued runs (at most %d)", queued, l.Queued)
	}
	return nil
}

// CheckUsage refuses, with ErrInvalid, usage no store keeps (Store.AddUsage):
// tokens that are not positive, or a user id that is not storable text.
func CheckUsage(userID string, tokens int64) error {
	if tokens <= 0 {
		return Errorf(CodeInvalidRequest, "usage must be positive, not %d", tokens)
	}
	if !ValidText(userID) {
		return Errorf(CodeInvalidRequest, "the user id is not storable text")
	}
	return nil
}

// RateLimiter bounds how often each key (a user) may act: a steady rate
// with a burst, both fixed when the limiter is made. Implementations are
// safe for concurrent use.
type RateLimiter interface {
	// Allow takes one action from key's allowance. When none is left it
	// takes nothing and returns false and how long until one is (> 0).
	// An error (its backing service is down) takes nothing either.
	Allow(ctx context.Context, key string) (ok bool, retryAfter time.Duration, err error)
}

// ListPosition is a position in a listing ordered by creation time then
// ID (ListThreads, ListRuns): that of the last item a page held. Stores
// keep times to the microsecond; a position made from a stored item's
// CreatedAt and ID names exactly that item.
type ListPosition struct {
	CreatedAt time.Time
	ID        string
}

// ThreadUpdate is a change of a thread's title and metadata
// (Store.UpdateThread).
type ThreadUpdate struct {
	// Title, when not nil, replaces the thread's title.
	Title *string
	// Metadata is merged into the thread's metadata key by key: a key
	// whose value is nil is removed, any other replaces the thread's.
	Metadata map[string]any
	// UpdatedAt is the thread's new UpdatedAt.
	UpdatedAt time.Time
}

// EventLog holds the events of each run, in order, for any number of
// readers that each keep their own position. Implementations are safe for
// concurrent use.
//
// An event's Seq is its id for ever: every reader, on every instance,
// reads the same event under the same Seq, also after the instance that
// appended it died. A log shared by instances hands an event to readers,
// its own included, only once the shared store holds it.
type EventLog interface {
	// Append adds events to the end of the run's log, creating the log on
	// first use, assigns their Seq (1, 2, 3… without gaps) and returns the
	// Seq of the last one. When events[0].Seq is not 0 it is the Seq the
	// caller expects the first event to get: if the log's next Seq is
	// another, nothing is appended and Append fails with ErrConflict (the
	// terminal event goes where the store says it is). Once a terminal
	// event is appended the log is closed: a later Append fails with
	// ErrConflict. An Append of no events appends nothing and returns the
	// Seq of the run's last event (0 for none). Append keeps the events,
	// not the slice that holds them: the caller may reuse it.
	Append(ctx context.Context, runID string, events ...Event) (int64, error)
	// Read returns up to max events with Seq > after, oldest first. When
	// there are none yet it waits until one is appended or ctx ends (then
	// it returns ctx's error). end is true when the returned events reach
	// the terminal event, or after is already at or past it: nothing more
	// will ever come. ErrNotFound when the log does not exist (never
	// created, or evicted after its retention or under a size cap);
	// ErrGone when the events after `after` were dropped to keep the log
	// within its size caps.
	Read(ctx context.Context, runID string, after int64, max int) (events []Event, end bool, err error)
	// Bounds tells, without waiting, which events of the run's log a
	// reader can have: ErrNotFound when the log does not exist, as for
	// Read.
	Bounds(ctx context.Context, runID string) (LogBounds, error)
}

// ReadableOnAppend is implemented by an EventLog whose readers can read
// events as soon as Append has returned them (a log of one process): a
// run may then hand its events to the client that started it itself
// (agent.Inline), and every other reader still reads them under the same
// Seq. A log shared by instances hands events to readers only once the
// shared store holds them, which can be after Append returns: it does not
// implement it.
type ReadableOnAppend interface {
	EventLog
	ReadableOnAppend()
}

// LogBounds is what a run's log holds, as readers see it.
type LogBounds struct {
	// First is the Seq of the first event still kept; a reader after
	// First-1 or later can read on, one before gets ErrGone. Last+1 when
	// no event is kept.
	First int64
	// Last is the Seq of the last event readers can read (0: none yet).
	Last int64
	// End is the Seq of the terminal event once appended, else 0.
	End int64
}

// ModelRequest is one call to a chat model.
type ModelRequest struct {
	// Model is the upstream model name.
	Model string
	// Messages is the conversation: system instructions first, then the
	// thread's history and the new input.
	Messages    []Message
	Tools       []ToolSpec
	Temperature *float64
}

// ModelDelta is one streamed piece of a model's answer: text, or a piece of
// a tool call.
type ModelDelta struct {
	Text     string
	ToolCall *ToolCallDelta
}

// ToolCallDelta is a piece of a tool call's arguments. Index is the call's
// position in the answer; ID and Name are always filled in, from earlier
// pieces when this one lacks them.
type ToolCallDelta struct {
	Index     int
	ID        string
	Name      string
	Arguments string
}

// ModelResult is what one model call produced.
type ModelResult struct {
	Content      string
	ToolCalls    []ToolCall
	Usage        Usage
	FinishReason string
}

// Model is a chat model that streams.
type Model interface {
	// Stream calls the model and reports each piece of its answer to
	// onDelta as it arrives, then returns the whole answer. The delta (and
	// its ToolCall) is valid only during the call to onDelta. On failure it
	// returns what arrived before the failure along with an *Error
	// (CodeUpstream, CodeUpstreamTimeout, CodeRateLimited, CodeCancelled
	// when ctx ended, or CodeInternal for a request it cannot build). Usage
	// comes with the last chunk of a stream, so a failed call may report none.
	Stream(ctx context.Context, req ModelRequest, onDelta func(ModelDelta)) (ModelResult, error)
}

// ToolSpec describes a tool to the model.
type ToolSpec struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	// Parameters is the JSON Schema of the arguments object.
	Parameters json.RawMessage `json:"parameters"`
}

// Tool is something the model can call.
type Tool interface {
	Spec() ToolSpec
	// Call runs the tool. A returned error is reported to the model as the
	// tool's output; it never fails the run.
	Call(ctx context.Context, arguments json.RawMessage) (string, error)
}
