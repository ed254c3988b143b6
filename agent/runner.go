// Package agent is the runner: it turns a user's input into a run, executes
// the run on a bounded worker pool (model stream, tool calls, the loop
// between them), appends every step to the run's event log and saves the
// thread to the store. It never touches an HTTP connection.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/template"
	"text/template/parse"
	"time"

	"github.com/agentstream/agentstream"
)

// Config configures a Runner. Zero fields take the defaults given.
type Config struct {
	// MaxConcurrentRuns bounds the runs executing at once. Default 256.
	MaxConcurrentRuns int
	// MaxQueuedRuns bounds the runs waiting for a worker; past it Start
	// fails with CodeOverloaded. Default 1024; negative means no queue.
	MaxQueuedRuns int
	// ToolTimeout bounds each tool call of a tool without a timeout of
	// its own (agentstream.TimedTool). Default 30s.
	ToolTimeout time.Duration
	// MaxParallelTools bounds the calls of one model turn that run at
	// once; the others wait for a place. Default 8.
	MaxParallelTools int
	// DefaultModel is the model of agents that name none. Required.
	DefaultModel string
	// DefaultAgent is the agent of runs and threads that name none.
	// Default "assistant".
	DefaultAgent string
	// CheckpointInterval is how often the answer being streamed is saved
	// as a partial message. Default 2s.
	CheckpointInterval time.Duration
	// FinalizeTimeout bounds the store write and log append that end a
	// run, which happen after the run's own context may be gone. Default 30s.
	FinalizeTimeout time.Duration
	// Owner names this instance in the runs it starts, when several
	// instances share the store: each run then holds a lease (Owner and
	// LeaseUntil in the store) that this runner renews, and this runner
	// also ends, as interrupted, the runs of instances whose leases ran
	// out. Empty (the default): no leases; the runner is the store's only
	// user.
	Owner string
	// LeaseTTL is how long a lease lasts without renewal; leases are
	// renewed, and expired ones swept, every third of it. Default 15s.
	LeaseTTL time.Duration
	// Limits are the per-user limits on runs and tokens. Default none.
	Limits Limits
}

// Limits bound what one user (Run.UserID) may use, across the instances
// sharing the store; 0 is no limit. Past one, Start fails with a 429 code
// whose message names the config key (limits.*).
type Limits struct {
	// ConcurrentRuns bounds the user's queued and running runs
	// (CodeTooManyRuns).
	ConcurrentRuns int
	// QueuedRuns bounds the user's runs waiting for a worker
	// (CodeTooManyQueued).
	QueuedRuns int
	// DailyTokens bounds the input and output tokens of the user's model
	// calls per UTC day, counted in the store after each call: Start
	// refuses a run once they are reached, and a running run stops before
	// its next model call, failed with CodeBudgetExceeded.
	DailyTokens int64
}

// WithDefaults returns c with unset fields filled in.
func (c Config) WithDefaults() Config {
	if c.MaxConcurrentRuns <= 0 {
		c.MaxConcurrentRuns = 256
	}
	if c.MaxQueuedRuns < 0 {
		c.MaxQueuedRuns = 0
	} else if c.MaxQueuedRuns == 0 {
		c.MaxQueuedRuns = 1024
	}
	if c.ToolTimeout <= 0 {
		c.ToolTimeout = 30 * time.Second
	}
	if c.MaxParallelTools <= 0 {
		c.MaxParallelTools = 8
	}
	if c.DefaultAgent == "" {
		c.DefaultAgent = "assistant"
	}
	if c.CheckpointInterval <= 0 {
		c.CheckpointInterval = 2 * time.Second
	}
	if c.FinalizeTimeout <= 0 {
		c.FinalizeTimeout = 30 * time.Second
	}
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = 15 * time.Second
	}
	return c
}

// Deps are the runner's collaborators.
type Deps struct {
	Store agentstream.Store
	Log   agentstream.EventLog
	// Model is the model of agents without an Endpoint.
	Model agentstream.Model
	// Models are the model endpoints agents name (Agent.Endpoint).
	Models map[string]agentstream.Model
	Agents []agentstream.Agent
	// Tools are the tools agents name (Agent.Tools).
	Tools map[string]agentstream.Tool
	// Sources are the tool sources agents name (Agent.MCPServers).
	Sources map[string]agentstream.ToolSource
	Logger  *slog.Logger
	// Now returns the current time; default time.Now.
	Now func() time.Time
	// Mask, when set, rewrites every tool call's output (or error) before
	// the model, the stream or the store get it: the server masks the
	// configured secrets a tool echoes. Default: outputs as they are.
	Mask func(string) string
}

// Runner starts and executes runs.
type Runner struct {
	cfg     Config
	store   agentstream.Store
	log     agentstream.EventLog
	model   agentstream.Model
	models  map[string]agentstream.Model
	tools   map[string]agentstream.Tool
	sources map[string]agentstream.ToolSource
	logger  *slog.Logger
	// schemas caches the compiled argument schemas of tools.
	schemas *schemaCache
	now     func() time.Time
	// mask is Deps.Mask, or the identity.
	mask func(string) string

	agents map[string]*compiledAgent
	pool   *pool
	// histories spares the next run on a thread the read of its messages.
	histories *histories

	mu     sync.Mutex
	active map[string]context.CancelCauseFunc
	// threads maps a thread to its active run in this runner.
	threads map[string]*threadRun
	// closed is guarded by mu, so that a Start either sees it set or has
	// counted itself in wg before Shutdown waits on wg.
	closed bool
	wg     sync.WaitGroup
	// base is the parent of every run's context; Shutdown cancels it to
	// interrupt every run, even one whose Start has not registered it yet.
	base      context.Context
	interrupt context.CancelCauseFunc

	// unsaved counts the ends being saved in the background (saveLater);
	// stopUnsaved, closed by Shutdown, stops them.
	unsaved     sync.WaitGroup
	stopUnsaved chan struct{}
	stopOnce    sync.Once

	// stopLeases ends the lease loop (Owner set), which closes leasesDone.
	stopLeases chan struct{}
	leasesDone chan struct{}
	// renewedFrom is when the last renewal that succeeded began (unix
	// ns): every lease of this runner runs past it.
	renewedFrom atomic.Int64
}

type compiledAgent struct {
	agentstream.Agent
	instructions *template.Template
	// fields are the context keys the instructions use ({{.name}}).
	fields []string
	// required are the fields used outside the condition and the bodies
	// of if and with, sorted: a run whose context lacks one is refused.
	required []string
	// bare is the instructions rendered with no context, when they render
	// (nothing is required): what most runs send. Rendering them anew
	// costs a run tens of µs, mostly the stack text/template grows.
	bare   string
	bareOK bool
	// model is the model its runs call.
	model agentstream.Model
	// tools are its tools from Deps.Tools; sources its tool sources.
	tools   []agentstream.Tool
	sources []agentstream.ToolSource
}

// topFields returns the names of the top-level fields ({{.name}}, also
// inside if, with and range, and $.name anywhere) a template uses, and of
// those the ones it requires: the ones used outside the condition (the
// pipe) and the bodies of every if and with, sorted. A key used only
// under a condition is optional ({{with .name}}…{{end}}); one used
// elsewhere would render as an empty string when missing, which is never
// what the instructions mean.
func topFields(node parse.Node) (fields, required []string) {
	seen := map[string]bool{}
	needed := map[string]bool{}
	use := func(name string, cond bool) {
		seen[name] = true
		if !cond {
			needed[name] = true
		}
	}
	// top is false inside with and range, where "." is no longer the
	// context and only $.name reaches it; cond is true under an if or a
	// with.
	var walk func(n parse.Node, top, cond bool)
	walk = func(n parse.Node, top, cond bool) {
		switch n := n.(type) {
		case *parse.ListNode:
			if n == nil {
				return
			}
			for _, c := range n.Nodes {
				walk(c, top, cond)
			}
		case *parse.ActionNode:
			walk(n.Pipe, top, cond)
		case *parse.PipeNode:
			if n == nil {
				return
			}
			for _, c := range n.Cmds {
				walk(c, top, cond)
			}
		case *parse.CommandNode:
			for _, a := range n.Args {
				walk(a, top, cond)
			}
		case *parse.FieldNode:
			if top {
				use(n.Ident[0], cond)
			}
		case *parse.VariableNode:
			if len(n.Ident) > 1 && n.Ident[0] == "$" {
				use(n.Ident[1], cond)
			}
		case *parse.ChainNode:
			walk(n.Node, top, cond)
		case *parse.IfNode:
			walk(n.Pipe, top, true)
			walk(n.List, top, true)
			walk(n.ElseList, top, true)
		case *parse.WithNode:
			walk(n.Pipe, top, true)
			walk(n.List, false, true)
			walk(n.ElseList, top, true)
		case *parse.RangeNode:
			walk(n.Pipe, top, cond)
			walk(n.List, false, cond)
			walk(n.ElseList, top, cond)
		case *parse.TemplateNode:
			walk(n.Pipe, top, cond)
		}
	}
	walk(node, true, false)
	fields = make([]string, 0, len(seen))
	for f := range seen {
		fields = append(fields, f)
	}
	required = make([]string, 0, len(needed))
	for f := range needed {
		required = append(required, f)
	}
	slices.Sort(required)
	return fields, required
}

// New checks the agents (templates parse, tools exist, the default agent
// is among them) and returns a Runner.
func New(cfg Config, d Deps) (*Runner, error) {
	cfg = cfg.WithDefaults()
	if d.Store == nil || d.Log == nil || d.Model == nil {
		return nil, errors.New("agent: Store, Log and Model are required")
	}
	if cfg.DefaultModel == "" {
		return nil, errors.New("agent: DefaultModel is required")
	}
	r := &Runner{
		cfg: cfg, store: d.Store, log: d.Log, model: d.Model, models: d.Models, tools: d.Tools,
		sources: d.Sources, schemas: newSchemaCache(),
		logger: d.Logger, now: d.Now, mask: d.Mask,
		agents:      make(map[string]*compiledAgent, len(d.Agents)),
		pool:        newPool(cfg.MaxConcurrentRuns, cfg.MaxQueuedRuns),
		active:      make(map[string]context.CancelCauseFunc),
		threads:     make(map[string]*threadRun),
		histories:   newHistories(time.Now),
		stopUnsaved: make(chan struct{}),
	}
	r.base, r.interrupt = context.WithCancelCause(context.Background())
	if r.logger == nil {
		r.logger = slog.New(slog.DiscardHandler)
	}
	if r.now == nil {
		r.now = time.Now
	}
	if r.mask == nil {
		r.mask = func(s string) string { return s }
	}
	for _, a := range d.Agents {
		ca, err := r.compile(a)
		if err != nil {
			return nil, err
		}
		if _, dup := r.agents[a.Name]; dup {
			return nil, fmt.Errorf("agent %q is declared twice", a.Name)
		}
		r.agents[a.Name] = ca
	}
	if _, ok := r.agents[cfg.DefaultAgent]; !ok {
		return nil, fmt.Errorf("default agent %q is not declared", cfg.DefaultAgent)
	}
	if cfg.Owner != "" {
		r.stopLeases, r.leasesDone = make(chan struct{}), make(chan struct{})
		go r.leaseLoop()
	}
	return r, nil
}

func (r *Runner) compile(a agentstream.Agent) (*compiledAgent, error) {
	if a.Name == "" {
		return nil, errors.New("an agent has no name")
	}
	if a.Model == "" {
		a.Model = r.cfg.DefaultModel
	}
	if a.MaxTurns <= 0 {
		a.MaxTurns = agentstream.DefaultMaxTurns
	}
	if len(a.Instructions) > MaxInstructionsBytes {
		return nil, fmt.Errorf("agent %q: instructions: %d bytes, more than the %d they may render to", a.Name, len(a.Instructions), MaxInstructionsBytes)
	}
	// No functions beyond text/template's builtins (and, call, html,
	// index, js, len, not, or, print, printf, println, slice, urlquery and
	// the comparisons): none of them reaches a file, the environment or a
	// process, and the data is JSON, which has no methods to call.
	tmpl, err := template.New(a.Name).Parse(a.Instructions)
	if err != nil {
		return nil, fmt.Errorf("agent %q: instructions: %w", a.Name, err)
	}
	ca := &compiledAgent{Agent: a, instructions: tmpl, model: r.model}
	ca.fields, ca.required = topFields(tmpl.Tree.Root)
	if len(ca.required) == 0 {
		// text/template's builtins are pure: the same data renders the
		// same text on every run.
		ca.bare, err = ca.execute(nil)
		ca.bareOK = err == nil
	}
	if len(a.Handoffs) > 0 || len(a.RequireApproval) > 0 {
		return nil, fmt.Errorf("agent %q: handoffs and require_approval are not supported yet", a.Name)
	}
	if a.Endpoint != "" {
		m, ok := r.models[a.Endpoint]
		if !ok {
			return nil, fmt.Errorf("agent %q: unknown model endpoint %q", a.Name, a.Endpoint)
		}
		ca.model = m
	}
	for _, name := range a.Tools {
		t, ok := r.tools[name]
		if !ok {
			return nil, fmt.Errorf("agent %q: unknown tool %q", a.Name, name)
		}
		ca.tools = append(ca.tools, t)
	}
	for _, name := range a.MCPServers {
		src, ok := r.sources[name]
		if !ok {
			return nil, fmt.Errorf("agent %q: unknown MCP server %q", a.Name, name)
		}
		ca.sources = append(ca.sources, src)
	}
	return ca, nil
}

// Agent returns the named agent (the default agent for ""), or a
// CodeInvalidRequest error naming the unknown agent.
func (r *Runner) Agent(name string) (agentstream.Agent, error) {
	ca, err := r.agent(name)
	if err != nil {
		return agentstream.Agent{}, err
	}
	return ca.Agent, nil
}

func (r *Runner) agent(name string) (*compiledAgent, error) {
	if name == "" {
		name = r.cfg.DefaultAgent
	}
	ca, ok := r.agents[name]
	if !ok {
		return nil, agentstream.Errorf(agentstream.CodeInvalidRequest, "unknown agent %q", name)
	}
	return ca, nil
}

// Agents returns every configured agent.
func (r *Runner) Agents() []agentstream.Agent {
	out := make([]agentstream.Agent, 0, len(r.agents))
	for _, ca := range r.agents {
		out = append(out, ca.Agent)
	}
	return out
}

// DefaultAgent returns the name of the default agent.
func (r *Runner) DefaultAgent() string { return r.cfg.DefaultAgent }

// Check reports whether a run of the named agent could start with this
// context (the agent exists, the context holds every key its instructions
// require, and they render), without writing
// anything, so a caller can validate before it creates a thread.
func (r *Runner) Check(agentName string, runCtx map[string]any) error {
	ca, err := r.agent(agentName)
	if err != nil {
		return err
	}
	_, err = ca.render(runCtx)
	return err
}

// StartRequest asks for a run on an existing thread.
type StartRequest struct {
	Thread agentstream.Thread
	// UserID is the authenticated user; it must own Thread.
	UserID string
	// Agent overrides the thread's agent when set.
	Agent string
	Input string
	// Context overrides the thread's context key by key.
	Context map[string]any
	// Multitask is what to do when the thread has an active run:
	// MultitaskReject (also ""), MultitaskEnqueue or MultitaskInterrupt.
	Multitask string
	// NewThread says Thread is not stored yet: Start creates it once the
	// run has a place in the pool, so a refused request writes nothing.
	// When its ID is taken, Start fails with ErrThreadTaken.
	NewThread bool
	// History is the conversation before Input that a client brought
	// (user and assistant messages with Role and Content): stored on the
	// thread before the input, with the run (Store.CreateRun), so the
	// model sees it. Only for a NewThread; an existing thread's messages
	// are its history.
	History []agentstream.Message
	// Inline, when set, asks for the run to execute on the caller's
	// goroutine when it can start at once and the event log hands events
	// to readers as soon as they are appended (ReadableOnAppend, a log of
	// one process; a shared log's readers must not get an event before
	// its shared store holds it): Start then makes Inline ready
	// (Inline.Ready), and the caller must call Inline.Run, once. A run
	// that waits in the queue executes on a worker as any other, and
	// Inline stays not ready.
	Inline *Inline
}

// Inline is a run that executes on the goroutine of the request that
// started it, which gets each of the run's events as soon as the log has
// it (Run). The log still gets every event first, for every other reader
// and for resuming; what is saved is the same. The stream of the request
// that started a run then needs no goroutine beside the run's, and no
// hand-off from one to the other per token.
type Inline struct {
	st      *runStart // set by Start when the run is to execute by Run
	started atomic.Bool
}

// Ready reports whether the run is to execute by Run.
func (in *Inline) Ready() bool { return in != nil && in.st != nil }

// Run executes the run on the calling goroutine and returns when it has
// ended. deliver, when not nil, is called with the events the run
// appends, once the log has them, their Seq set, one call at a time and
// in the log's order, on whichever of the run's goroutines appended them
// (tool calls run on their own). The run waits for deliver: it must not
// block for long. An event appended by another (the sweep of another
// instance ending a run whose lease ran out) is not delivered, and an
// event the log refused is not either: deliver sees a gap in Seq.
//
// Only the first call executes the run; later ones return at once. A
// panic in the run is raised again on a goroutine of its own, so that it
// ends the process as a panic on a worker would, instead of being
// recovered by the HTTP server with the run left active.
//
// Run's frame (no sync.Once, no closure) is kept small: it is on the
// stack for the whole run (see execute).
func (in *Inline) Run(deliver func([]agentstream.Event)) {
	if !in.Ready() || !in.started.CompareAndSwap(false, true) {
		return
	}
	defer raiseInlinePanic()
	st := in.st
	st.x.deliver = deliver
	st.x.r.execute(st) // st.exec without its frame
	st.ran()
}

// ran gives back the worker startNow took for st's inline run, as
// pool.exec does: out of Inline.Run, whose frame its arguments would
// take room in (see there).
//
//go:noinline
func (st *runStart) ran() { st.x.r.pool.next(st.x.run.UserID) }

// raiseInlinePanic, deferred by Inline.Run, raises a panic of the run
// again on a goroutine of its own, which ends the process.
func raiseInlinePanic() {
	if e := recover(); e != nil {
		stack := debug.Stack()
		go panic(fmt.Sprintf("%v\n\nthe run's goroutine:\n%s", e, stack))
		select {} // the process ends
	}
}

// runStart is a run Start saved, for its job to execute: one pointer for
// the job's closure and for execute, not a closure's many captures, which
// a frame under the whole run would hold (see execute).
type runStart struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	system string
	// x is the run's execution, which holds the run, its agent and input
	// (x.r, x.run, x.agent, x.input[0]; x.deliver is set by an Inline's Run):
	// in place, not copied into an execution of its own, so that an open
	// stream holds them once (BenchmarkStreamMemory in ../server).
	x execution
	// lastPos is the queue position last told, guarded by posMu.
	posMu   sync.Mutex
	lastPos int
}

// exec executes the run: the job's run.
func (st *runStart) exec() { st.x.r.execute(st) }

// done ends what Start began for the run, once it has executed.
func (st *runStart) done() {
	st.cancel(nil)
	st.x.r.wg.Done()
}

// dequeued notes that the run has left the queue: a late position is
// stale. Not inlined, so that exec's frame stays small (see execute).
//
//go:noinline
func (st *runStart) dequeued() {
	st.posMu.Lock()
	st.lastPos = 0
	st.posMu.Unlock()
}

// positioned is the job's positioned.
func (st *runStart) positioned(pos int) {
	// Positions only go down; a stale, larger one is dropped.
	st.posMu.Lock()
	defer st.posMu.Unlock()
	if pos >= st.lastPos {
		return
	}
	st.lastPos = pos
	st.x.r.appendEvents(context.Background(), st.x.run.ID,
		agentstream.NewEvent(agentstream.EventRunQueued, agentstream.RunQueuedData{Position: pos}))
}

// Multitask settings: what a run does when its thread has an active run.
const (
	// MultitaskReject refuses the new run with CodeConflict (the default).
	MultitaskReject = "reject"
	// MultitaskEnqueue waits for the active run to end, then starts.
	MultitaskEnqueue = "enqueue"
	// MultitaskInterrupt cancels the active run, then starts.
	MultitaskInterrupt = "interrupt"
)

// threadRun is the active run of a thread; done closes when it has ended.
// done is made, under Runner.mu, only when a run waits for this one
// (multitask enqueue or interrupt): most runs have none waiting, and an
// open stream held the channel for nothing.
type threadRun struct {
	runID string
	done  chan struct{}
}

// createRun saves the run, applying the multitask setting when the thread
// has an active run.
func (r *Runner) createRun(ctx context.Context, multitask string, run agentstream.Run, input agentstream.Message) (agentstream.Message, error) {
	lim := agentstream.RunLimits{Active: r.cfg.Limits.ConcurrentRuns, Queued: r.cfg.Limits.QueuedRuns}
	create := r.store.CreateRun
	if lim != (agentstream.RunLimits{}) {
		create = func(ctx context.Context, run agentstream.Run, input agentstream.Message, history ...agentstream.Message) (agentstream.Message, error) {
			return r.store.CreateRunLimited(ctx, run, lim, input, history...)
		}
	}
	for {
		stored, err := create(ctx, run, input)
		if !errors.Is(err, agentstream.ErrConflict) {
			return stored, err
		}
		if multitask == "" || multitask == MultitaskReject {
			return agentstream.Message{}, agentstream.Wrap(agentstream.CodeConflict, err,
				"the thread already has an active run; wait for it to end, cancel it, or send multitask \"enqueue\" or \"interrupt\"")
		}
		// Wait for the active run to end. One this runner does not know
		// (a Start still saving it) is polled for.
		var done <-chan struct{}
		r.mu.Lock()
		active := r.threads[run.ThreadID]
		if active != nil {
			if active.done == nil {
				active.done = make(chan struct{})
			}
			done = active.done
		}
		r.mu.Unlock()
		if active != nil && multitask == MultitaskInterrupt {
			r.stop(active.runID, errCancelled)
		}
		select {
		case <-done:
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			return agentstream.Message{}, agentstream.Wrap(agentstream.CodeCancelled, ctx.Err(), "the request ended while waiting for the thread's active run")
		case <-r.base.Done():
			return agentstream.Message{}, agentstream.Errorf(agentstream.CodeUnavailable, "the server is shutting down; try another instance or try again shortly")
		}
	}
}

// limitRetry is the Retry-After of a run refused for the user's runs: when
// one of theirs may have ended.
const limitRetry = time.Second

// limitError returns the client's error for a store's refusal of a run past
// the user's limits, or nil for another error.
func (r *Runner) limitError(err error) error {
	switch {
	case errors.Is(err, agentstream.ErrTooManyRuns):
		e := agentstream.Errorf(agentstream.CodeTooManyRuns,
			"limits.concurrent_runs (%d) reached for this user: that many runs are queued or running; retry when one ends", r.cfg.Limits.ConcurrentRuns)
		e.Err, e.RetryAfter = err, limitRetry
		return e
	case errors.Is(err, agentstream.ErrTooManyQueued):
		e := agentstream.Errorf(agentstream.CodeTooManyQueued,
			"limits.queued_runs (%d) reached for this user: that many runs wait for a worker; retry when one starts", r.cfg.Limits.QueuedRuns)
		e.Err, e.RetryAfter = err, limitRetry
		return e
	}
	return nil
}

// checkBudget refuses with CodeBudgetExceeded when the user's tokens of the
// UTC day have reached Limits.DailyTokens; with no budget it reads nothing.
func (r *Runner) checkBudget(ctx context.Context, userID string) error {
	used, retry, err := r.overBudget(ctx, userID)
	if err != nil || retry == 0 {
		return err
	}
	e := agentstream.Errorf(agentstream.CodeBudgetExceeded,
		"limits.daily_tokens (%d) reached for this user: %d tokens used today (UTC); retry after midnight UTC", r.cfg.Limits.DailyTokens, used)
	e.RetryAfter = retry
	return e
}

// overBudget returns the user's tokens of the UTC day and, when they have
// reached Limits.DailyTokens, the time to the next UTC midnight (else 0).
func (r *Runner) overBudget(ctx context.Context, userID string) (used int64, retry time.Duration, err error) {
	budget := r.cfg.Limits.DailyTokens
	if budget <= 0 {
		return 0, 0, nil
	}
	now := r.now().UTC()
	if used, err = r.store.Usage(ctx, userID, now); err != nil || used < budget {
		return used, 0, err
	}
	midnight := time.Date(now.Year(), now.Month(), now.Day()+1, 0, 0, 0, 0, time.UTC)
	return used, midnight.Sub(now), nil
}

// ErrThreadTaken is the error of a Start whose NewThread's ID exists.
var ErrThreadTaken = agentstream.Errorf(agentstream.CodeConflict, "a thread with this id exists")

// Start validates the request, saves the user's input and the run (the
// question is never lost once Start returns), appends run.created and
// hands the run to the pool. It returns the run; its events follow in the
// log. Errors: CodeInvalidRequest (unknown agent, empty input, instructions
// that do not render with the context), CodeOverloaded (pool and queue
// full; nothing written), CodeConflict (the thread has an active run), or
// a store error.
func (r *Runner) Start(ctx context.Context, req StartRequest) (agentstream.Run, error) {
	if strings.TrimSpace(req.Input) == "" {
		return agentstream.Run{}, agentstream.Errorf(agentstream.CodeInvalidRequest, "input is empty")
	}
	name := req.Agent
	if name == "" {
		name = req.Thread.Agent
	}
	ca, err := r.agent(name)
	if err != nil {
		return agentstream.Run{}, err
	}
	runCtx := mergeContext(req.Thread.Context, req.Context)
	system, err := ca.render(runCtx)
	if err != nil {
		return agentstream.Run{}, err
	}
	if err := r.checkBudget(ctx, req.UserID); err != nil {
		return agentstream.Run{}, err
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return agentstream.Run{}, agentstream.Errorf(agentstream.CodeUnavailable, "the server is shutting down; try another instance or try again shortly")
	}
	// Counted from here, so that Shutdown waits for this Start too.
	r.wg.Add(1)
	r.mu.Unlock()
	// A run that can start at once is saved as running; one that may wait
	// (the pool is busy, or the thread's active run is to be waited for or
	// interrupted) is saved as queued and started when a worker takes it.
	startNow := (req.Multitask == "" || req.Multitask == MultitaskReject) && r.pool.startNow(req.UserID)
	if !startNow && !r.pool.reserve() {
		r.wg.Done()
		return agentstream.Run{}, agentstream.Errorf(agentstream.CodeOverloaded,
			"the server is running %d runs and queueing as many as it may; try again shortly", r.cfg.MaxConcurrentRuns)
	}
	release := func() {
		if startNow {
			r.pool.unstart(req.UserID)
		} else {
			r.pool.unreserve()
		}
		r.wg.Done()
	}

	now := r.now().UTC()
	run := agentstream.Run{
		ID: agentstream.NewID("run_"), ThreadID: req.Thread.ID, UserID: req.UserID,
		Agent: ca.Name, Status: agentstream.RunQueued, Context: runCtx, CreatedAt: now,
	}
	if startNow {
		run.Status, run.StartedAt = agentstream.RunRunning, &now
	}
	if r.cfg.Owner != "" {
		until := now.Add(r.cfg.LeaseTTL)
		run.Owner, run.LeaseUntil = r.cfg.Owner, &until
	}
	input := agentstream.Message{
		ID: agentstream.NewID("msg_"), ThreadID: run.ThreadID, RunID: run.ID,
		Role: agentstream.RoleUser, Content: req.Input, Status: agentstream.MessageComplete, CreatedAt: now,
	}
	// Every value is one the stores keep, checked before anything is
	// written: a refused run leaves no thread behind.
	checks := []error{run.Check(), input.Check()}
	for _, m := range req.History {
		checks = append(checks, agentstream.Message{ID: "msg_", Role: m.Role, Content: m.Content}.Check())
	}
	if req.NewThread {
		checks = append(checks, req.Thread.Check())
	}
	for _, err := range checks {
		if err != nil {
			release()
			return agentstream.Run{}, err
		}
	}
	if req.NewThread {
		// The thread and its first run in one write: a refused run leaves
		// no thread behind, and a new conversation costs one write less.
		var history []agentstream.Message
		for _, m := range req.History {
			history = append(history, agentstream.Message{
				ID: agentstream.NewID("msg_"), ThreadID: run.ThreadID, RunID: run.ID,
				Role: m.Role, Content: m.Content, Status: agentstream.MessageComplete, CreatedAt: now,
			})
		}
		lim := agentstream.RunLimits{Active: r.cfg.Limits.ConcurrentRuns, Queued: r.cfg.Limits.QueuedRuns}
		input, err = r.store.CreateThreadRun(ctx, req.Thread, run, lim, input, history...)
		if errors.Is(err, agentstream.ErrConflict) {
			err = ErrThreadTaken // a new thread has no run to conflict with
		}
	} else {
		input, err = r.createRun(ctx, req.Multitask, run, input)
	}
	if err != nil {
		release()
		if limited := r.limitError(err); limited != nil {
			return agentstream.Run{}, limited
		}
		return agentstream.Run{}, err
	}
	// A run whose first event cannot reach the log is refused: its readers
	// would get a log without its head. The question stays saved, with
	// the run ended failed.
	if _, err := r.log.Append(ctx, run.ID, agentstream.NewEvent(agentstream.EventRunCreated, agentstream.RunCreatedData{
		RunID: run.ID, ThreadID: run.ThreadID, Agent: run.Agent, Status: run.Status,
	})); err != nil {
		release()
		return agentstream.Run{}, r.refuseUnlogged(ctx, run, err)
	}

	execCtx, cancel := context.WithCancelCause(r.base)
	r.mu.Lock()
	r.active[run.ID] = cancel
	r.threads[run.ThreadID] = &threadRun{runID: run.ID}
	r.mu.Unlock()

	st := &runStart{ctx: execCtx, cancel: cancel, system: system, lastPos: int(^uint(0) >> 1)}
	st.x.r, st.x.run, st.x.agent, st.x.input[0] = r, run, ca, input
	j := &job{user: run.UserID, run: st.exec, positioned: st.positioned}
	// A run cancelled (or interrupted) while it waits leaves the queue and
	// ends now: it needs no worker to be saved as cancelled. withdraw
	// succeeds at most once, and only for a job still waiting.
	withdraw := func() {
		if r.pool.withdraw(j) {
			go j.run()
		}
	}
	if startNow {
		if _, ok := r.log.(agentstream.ReadableOnAppend); ok && req.Inline != nil {
			req.Inline.st = st
			return run, nil
		}
		r.pool.begin(j)
		return run, nil
	}
	context.AfterFunc(execCtx, withdraw) // released by cancel when the run ends
	r.pool.submit(j)
	if execCtx.Err() != nil {
		withdraw() // cancelled before it was queued
	}
	return run, nil
}

// refuseUnlogged ends a run whose run.created the log refused, as failed,
// and returns the error Start reports: the event log is unavailable.
func (r *Runner) refuseUnlogged(ctx context.Context, run agentstream.Run, cause error) error {
	r.logger.Error("the event log refused a new run's first event; the run is refused", "run_id", run.ID, "err", cause)
	now := r.now().UTC()
	e := agentstream.Wrap(agentstream.CodeUnavailable, cause, "the event log is unavailable; try again shortly")
	run.Status, run.Error, run.FinishedAt = agentstream.RunFailed, e.Info(), &now
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.FinalizeTimeout)
	defer cancel()
	if err := r.store.FinishRun(ctx, run, nil); err != nil {
		// The thread stays blocked until the run is ended: by the next
		// start (one instance) or by its lease running out.
		r.logger.Error("ending a refused run", "run_id", run.ID, "err", err)
	}
	return e
}

// Cancel stops a run that is queued or running: the model call and tools
// are aborted, the partial answer is saved and the run ends cancelled.
// It reports whether the run was active here.
func (r *Runner) Cancel(runID string) bool {
	return r.stop(runID, errCancelled)
}

var (
	errCancelled   = agentstream.Errorf(agentstream.CodeCancelled, "the run was cancelled")
	errInterrupted = agentstream.Errorf(agentstream.CodeInterrupted, "the server stopped before the run ended")
)

func (r *Runner) stop(runID string, cause error) bool {
	r.mu.Lock()
	cancel, ok := r.active[runID]
	r.mu.Unlock()
	if ok {
		cancel(cause)
	}
	return ok
}

// Shutdown stops taking runs, lets running and queued runs finish until
// ctx ends, then interrupts the rest and waits for them to be saved.
func (r *Runner) Shutdown(ctx context.Context) error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.pool.close()
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	select {
	case <-done:
		r.endUnsaved(ctx)
		r.endLeases()
		return nil
	case <-ctx.Done():
	}
	r.interrupt(errInterrupted)
	<-done
	r.endUnsaved(ctx)
	r.endLeases()
	return ctx.Err()
}

// endUnsaved lets the ends being saved in the background finish until ctx
// ends, then stops them.
func (r *Runner) endUnsaved(ctx context.Context) {
	done := make(chan struct{})
	go func() { r.unsaved.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	r.stopOnce.Do(func() { close(r.stopUnsaved) })
	<-done
}

// Draining reports whether Shutdown has begun: the runner takes no runs.
func (r *Runner) Draining() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

// Load returns how many runs execute and wait now.
func (r *Runner) Load() (running, queued int) { return r.pool.load() }

// appendEvents appends evs to the run's log and returns the Seq of the
// last; a failure is logged (the run goes on) and reported by ok.
func (r *Runner) appendEvents(ctx context.Context, runID string, evs ...agentstream.Event) (last int64, ok bool) {
	last, err := r.log.Append(ctx, runID, evs...)
	if err != nil {
		r.logger.Error("appending to the event log", "run_id", runID, "err", err)
		return 0, false
	}
	return last, true
}

func mergeContext(base, over map[string]any) map[string]any {
	if len(base) == 0 && len(over) == 0 {
		return nil
	}
	m := make(map[string]any, len(base)+len(over))
	for k, v := range base {
		m[k] = v
	}
	for k, v := range over {
		m[k] = v
	}
	return m
}

func (ca *compiledAgent) render(ctx map[string]any) (string, error) {
	var missing []string
	for _, k := range ca.required {
		if v, ok := ctx[k]; !ok || v == nil {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		quoted := make([]string, len(missing))
		for i, k := range missing {
			quoted[i] = strconv.Quote(k)
		}
		keys, them := "key", "it"
		if len(missing) > 1 {
			keys, them = "keys", "them"
		}
		return "", agentstream.Errorf(agentstream.CodeInvalidRequest,
			"agent %q's instructions use the context %s %s, which this run lacks: send %s, or make %s optional in the instructions ({{with .%s}}…{{end}})",
			ca.Name, keys, strings.Join(quoted, ", "), them, them, missing[0])
	}
	if len(ctx) == 0 && ca.bareOK {
		return ca.bare, nil
	}
	return ca.execute(ctx)
}

// execute renders the instructions with ctx, whose keys the caller has
// checked against ca.required.
func (ca *compiledAgent) execute(ctx map[string]any) (string, error) {
	// A key used only under an if or a with that the context lacks renders
	// as an empty string, not as text/template's "<no value>".
	data := make(map[string]any, len(ctx)+len(ca.fields))
	for _, f := range ca.fields {
		data[f] = ""
	}
	for k, v := range ctx {
		data[k] = v
	}
	b := &boundedWriter{max: MaxInstructionsBytes}
	if err := ca.instructions.Execute(b, data); err != nil {
		if b.over {
			return "", agentstream.Errorf(agentstream.CodeInvalidRequest,
				"agent %q's instructions render to more than %d bytes with this context (a range over a long list?): send a smaller context",
				ca.Name, MaxInstructionsBytes)
		}
		return "", agentstream.Errorf(agentstream.CodeInvalidRequest,
			"the context does not fit agent %q's instructions: %v", ca.Name, err)
	}
	return b.b.String(), nil
}

// MaxInstructionsBytes bounds an agent's rendered instructions: a context
// from a client ranged over, or a template that calls itself, stops there
// with an error rather than filling memory. text/template bounds the
// depth of templates calling templates (100000) by itself.
const MaxInstructionsBytes = 256 << 10

// errTooLong stops a template's execution once its output passes the
// bound; render reports it.
var errTooLong = errors.New("rendered instructions too long")

// boundedWriter keeps at most max bytes and fails the write that would
// pass them, which ends the template's execution.
type boundedWriter struct {
	b    strings.Builder
	max  int
	over bool
}

func (w *boundedWriter) Write(p []byte) (int, error) {
	if w.b.Len()+len(p) > w.max {
		w.over = true
		return 0, errTooLong
	}
	return w.b.Write(p)
}
