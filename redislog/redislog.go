// Package redislog is the agentstream.EventLog on Redis Streams, shared by
// several server instances: the instance running a run (its owner) appends
// the run's events, and any instance reads them.
//
// # Keys
//
// A run's events live in the stream {Prefix}{<runID>}:events, one entry per
// event with the explicit ID 0-<seq> and the fields t (the event's type) and
// d (its JSON data, as the native wire format sends it). Its books are the
// hash {Prefix}{<runID>}:meta: first (the first seq kept), last, bytes (of
// the events kept, each counting agentstream.Event.Size bytes, as memlog
// counts them), end (the seq of the terminal event, absent while the run
// goes on), w (the Log that appended last) and tok, tokl (to recognize a
// retried first append). The run ID is a hash tag, so a run's keys share a
// cluster slot. Both keys expire Options.Retention after the terminal
// event, and, while the run goes on, between Options.IdleExpiry and a
// sixteenth of it more after the last append: an append sets the expiry
// again (for IdleExpiry and a sixteenth, recording when in the book xp)
// only once the one set is a sixteenth of IdleExpiry old, not every time.
// Unlike memlog there is no cap on all logs together: that is Redis's
// maxmemory.
//
// Every append goes through one Lua script that checks and updates the
// books, adds the events, drops the oldest ones past Options.MaxRunBytes
// (always keeping the newest, like memlog; reads of dropped events get
// agentstream.ErrGone naming the first seq kept), sets the expiry when due
// and publishes the new last seq on the channel {Prefix}notify:<runID>.
// Being atomic for each run, it keeps sequence numbers gapless, and a call
// retried after its reply was lost adds nothing twice. One call carries the
// appends of several runs (their keys are then of several cluster slots: a
// Redis Cluster is not supported), each with its own outcome. A read is one
// script too: the books and an exclusive XRANGE, in one round trip; a
// reader that a notification told of new events reads them with a plain
// XRANGE instead, and the script only when that does not start right after
// its last event (dropped events, a lost log) or at the end.
//
// # Coalescing
//
// A run streams one event per token, and one Redis call per token would
// cost a round trip each. So the first append of a run on a Log is a
// synchronous call that learns the run's next seq; later appends assign
// seqs locally, queue the events and return at once, and a per-run timer
// sends what is queued in one script call Options.Coalesce (2ms) later
// (events queued while a call is under way wait for the rest of their own
// window). The flushes of all the runs of a Log that come while one is
// under way go together in the next script call. An append holding the terminal event is sent at once and waits
// for Redis, so its caller knows the run's end is stored. A run's flushes
// are sequential. A reader, on this Log or another, gets an event only
// once Redis holds it: this Log serves its readers the run's newest flushed
// events (up to 64) from memory, readers elsewhere read Redis when the
// flush's notification wakes them. So every id a reader was sent is in
// Redis, and an instance that dies with events queued has sent them to no
// one: the instance that ends its run appends the terminal event after
// Redis's last one, at an id no reader saw as another event. With a
// negative Coalesce every append is sent at once and waits for Redis
// (concurrent appends of a run share a call).
//
// Assigning seqs locally needs one writer per run: the run's owner. Should
// another Log append to the run meanwhile (say the run was declared dead
// and interrupted elsewhere), the owner's colliding events are refused
// (ENDED once the log has ended, else CONFLICT) rather than silently
// skipped: they are dropped, the owner's appends to the run fail from then
// on with agentstream.ErrConflict, and its reads of the run go to Redis.
//
// # Waiting
//
// A Read with nothing to return waits for a local flush, for a
// notification on the run's channel, or for Options.PollInterval,
// whichever comes first; the poll catches notifications lost while Pub/Sub
// reconnects. A Log has one Pub/Sub connection, subscribed to a run's
// channel while the run has waiting readers, and 10 seconds more for their
// next Read; a reader waits for the subscription to be confirmed before it
// reads, so no append is missed between its read and its wait. The
// notification carries the run's new last seq, so a reader already at it
// waits without reading. No reader holds a Redis connection while it
// waits: a reader on another instance costs one read per flush.
//
// # Failures
//
// Redis errors are agentstream.ErrUnavailable (ErrConflict for the cases
// above, CodeInternal for a command Redis rejects). A failed flush keeps
// the events queued (no reader has them until Redis does) and retries with
// backoff; the next append of the run returns the error (its own events
// are taken all the same). Queued events are bounded by MaxRunBytes, the oldest
// dropped first. After Options.GiveUpAfter of failures the queued events
// are dropped, the error is logged and returned by the run's next append,
// and the run goes on from its next seq.
//
// A Redis restart that loses its data loses the logs: readers get
// agentstream.ErrNotFound (and the HTTP layer answers from the store) until
// the owner's next flush recreates the log from the first event it still
// holds; the log has then lost its head, and reads of earlier events get
// ErrGone. Events dropped from the queue leave the same kind of hole. The
// scripts are loaded again by themselves (EVALSHA falls back to EVAL).
// An eviction or a DEL can take one of a run's keys without the other: a
// stream gone under its books makes reads of the missing events ErrGone
// (not a wait for events that will not come); books gone over their stream
// make reads ErrNotFound. Either way the owner's next flush starts the log
// afresh after the last seq either key still knows, never reusing a seq.
//
// Cancel requests travel on the channel {Prefix}cancel: RequestCancel
// publishes one, and every Log hands it to its OnCancel handlers. Deleted
// threads travel likewise on {Prefix}threads: RequestForgetThread
// publishes a thread key, and every Log hands it to its OnThreadForgotten
// handlers, so that every instance drops the thread from its caches. A
// Presence records when a run last had a reader, on any instance, in
// {Prefix}{<runID>}:readers.
package redislog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/redis/go-redis/v9"
)

var _ agentstream.EventLog = (*Log)(nil)

// Options configures a Log. Zero fields take the defaults.
type Options struct {
	// Prefix starts every key and channel name. Default "agentstream:".
	// It must not hold braces (the run ID is the keys' hash tag).
	Prefix string
	// MaxRunBytes bounds one run's log: past it the oldest events are
	// dropped (the newest is always kept) and reads of them get ErrGone.
	// It also bounds the events a run has queued for Redis. Default 4 MiB.
	MaxRunBytes int64
	// Retention is how long a run's events stay readable after its
	// terminal event. Default 10 minutes.
	Retention time.Duration
	// IdleExpiry is how long, at least, a run's log stays after its last
	// append while the run goes on (a run whose owner died without ending
	// it); at most a sixteenth more, as the expiry is set seldom. Default
	// 24 hours.
	IdleExpiry time.Duration
	// Coalesce is how long an appended event may wait to be sent with
	// later ones. Default 2ms; negative: every Append is sent at once and
	// waits for Redis.
	Coalesce time.Duration
	// PollInterval is how often a waiting reader checks Redis anyway, in
	// case a notification was lost. Default 2s.
	PollInterval time.Duration
	// GiveUpAfter is how long a run's queued events are retried while Redis
	// fails before they are dropped. Default 1 minute.
	GiveUpAfter time.Duration
	// Logger receives flush failures. Default slog.Default().
	Logger *slog.Logger
}

// Defaults of Options.
const (
	DefaultPrefix       = "agentstream:"
	DefaultMaxRunBytes  = 4 << 20
	DefaultRetention    = 10 * time.Minute
	DefaultIdleExpiry   = 24 * time.Hour
	DefaultCoalesce     = 2 * time.Millisecond
	DefaultPollInterval = 2 * time.Second
	DefaultGiveUpAfter  = time.Minute
)

// WithDefaults fills in unset fields.
func (o Options) WithDefaults() Options {
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.MaxRunBytes <= 0 {
		o.MaxRunBytes = DefaultMaxRunBytes
	}
	if o.Retention <= 0 {
		o.Retention = DefaultRetention
	}
	if o.IdleExpiry <= 0 {
		o.IdleExpiry = DefaultIdleExpiry
	}
	if o.Coalesce == 0 {
		o.Coalesce = DefaultCoalesce
	}
	if o.PollInterval <= 0 {
		o.PollInterval = DefaultPollInterval
	}
	if o.GiveUpAfter <= 0 {
		o.GiveUpAfter = DefaultGiveUpAfter
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

const (
	// dialTimeout bounds connecting when the URL does not say.
	dialTimeout = 5 * time.Second
	// attemptTimeout bounds one flush call.
	attemptTimeout = 10 * time.Second
	// closeTimeout bounds how long Close flushes queued events.
	closeTimeout = 5 * time.Second
	// maxBatchEvents and maxBatchBytes bound one flush call, so one script
	// never holds Redis for long.
	maxBatchEvents = 1000
	maxBatchBytes  = 1 << 20
	// linger is how long a run's channel stays subscribed after its last
	// waiting reader left, for the reader's next Read.
	linger = 10 * time.Second
	// sweepEvery is how often idle subscriptions and run states are let go.
	sweepEvery = 2 * time.Second
)

// Log is an EventLog on Redis. It is safe for concurrent use.
type Log struct {
	opts   Options
	client *redis.Client
	addr   string
	// writer names this Log in the runs' books.
	writer string
	tokens atomic.Int64
	cmds   counter
	// overhead is what an event counts besides its type and data.
	overhead int64
	// refresh is how old an open run's expiry may grow before an append
	// sets it again: IdleExpiry/16.
	refresh time.Duration

	// ctx ends when Close stops flushing.
	ctx    context.Context
	cancel context.CancelFunc
	// done is closed by Close: waiting readers return.
	done      chan struct{}
	closing   atomic.Bool
	closeOnce sync.Once
	// flushers counts the running flush loops; fmu guards stopped, after
	// which no loop starts.
	fmu      sync.Mutex
	stopped  bool
	flushers sync.WaitGroup
	// bg counts the Pub/Sub receiver and the sweeper.
	bg sync.WaitGroup

	// pmu guards pcalls, the flushes' calls of the append script waiting
	// for the next pipeline, and psending, whether sendPipelines runs.
	pmu      sync.Mutex
	pcalls   []*appendCall
	psending bool

	// rmu guards runs, the runs this Log appends to. Lock order: a run's
	// mu, then rmu.
	rmu  sync.Mutex
	runs map[string]*run

	ps *redis.PubSub
	// subMu orders SUBSCRIBE and UNSUBSCRIBE commands.
	subMu sync.Mutex
	// wmu guards watches, the runs with waiting readers.
	wmu     sync.RWMutex
	watches map[string]*watch

	cancelMu sync.Mutex
	onCancel []func(runID string)
	onForget []func(threadKey string)
}

// Open connects to the Redis at url (redis://[user:password@]host:port/db,
// or rediss:// for TLS, with go-redis's query options), checks it answers
// and subscribes to the cancel and thread channels. An unreachable Redis fails at once
// with ErrUnavailable.
func Open(ctx context.Context, url string, opts Options) (*Log, error) {
	opts = opts.WithDefaults()
	routeLibraryLogs(opts.Logger)
	if strings.ContainsAny(opts.Prefix, "{}") {
		return nil, agentstream.Errorf(agentstream.CodeInvalidRequest, "redislog: the prefix %q holds a brace", opts.Prefix)
	}
	ro, err := redis.ParseURL(url)
	if err != nil {
		return nil, agentstream.Wrap(agentstream.CodeInvalidRequest, err, "redislog: bad Redis URL")
	}
	if ro.DialTimeout <= 0 {
		ro.DialTimeout = dialTimeout
	}
	l := &Log{
		opts:     opts,
		addr:     ro.Addr,
		writer:   agentstream.NewID("log_"),
		overhead: agentstream.Event{}.Size(),
		refresh:  opts.IdleExpiry / 16,
		done:     make(chan struct{}),
		runs:     make(map[string]*run),
		watches:  make(map[string]*watch),
	}
	l.client = redis.NewClient(ro)
	l.client.AddHook(&l.cmds)

	octx, cancel := context.WithTimeout(ctx, ro.DialTimeout)
	defer cancel()
	fail := func(err error) (*Log, error) {
		_ = l.client.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, agentstream.Wrap(agentstream.CodeUnavailable, err,
			fmt.Sprintf("redislog: Redis at %s is unreachable", l.addr))
	}
	if err := l.client.Ping(octx).Err(); err != nil {
		return fail(err)
	}
	l.ps = l.client.Subscribe(octx, l.cancelChannel(), l.threadsChannel())
	for range 2 { // one confirmation per channel
		msg, err := l.ps.ReceiveTimeout(octx, ro.DialTimeout)
		if err == nil {
			if s, ok := msg.(*redis.Subscription); !ok || s.Kind != "subscribe" {
				err = fmt.Errorf("unexpected reply to SUBSCRIBE: %v", msg)
			}
		}
		if err != nil {
			_ = l.ps.Close()
			return fail(err)
		}
	}

	l.ctx, l.cancel = context.WithCancel(context.Background())
	ch := l.ps.ChannelWithSubscriptions(redis.WithChannelSize(1024))
	l.bg.Add(2)
	go l.receive(ch)
	go l.sweep()
	return l, nil
}

// Ping checks Redis answers.
func (l *Log) Ping(ctx context.Context) error {
	return l.mapErr(ctx, l.client.Ping(ctx).Err(), "PING")
}

// Commands returns how many commands this Log has sent Redis (a pipeline
// counting each of its commands), besides those of its Pub/Sub connection.
func (l *Log) Commands() int64 { return l.cmds.n.Load() }

// Close flushes the queued events, waiting at most 5 seconds, then closes
// the connections. Readers still waiting get ErrUnavailable. Calling it
// again does nothing.
func (l *Log) Close() error {
	l.closeOnce.Do(func() {
		l.closing.Store(true)
		l.rmu.Lock()
		runs := make([]*run, 0, len(l.runs))
		for _, rs := range l.runs {
			runs = append(runs, rs)
		}
		l.rmu.Unlock()
		for _, rs := range runs {
			rs.mu.Lock()
			rs.urgent = rs.next
			if rs.timer != nil {
				rs.timer.Stop()
				rs.timerArmed = false
			}
			l.kick(rs)
			rs.mu.Unlock()
		}
		deadline := time.NewTimer(closeTimeout)
		for _, rs := range runs {
			if !rs.waitIdle(deadline.C) {
				break
			}
		}
		deadline.Stop()
		l.fmu.Lock()
		l.stopped = true
		l.fmu.Unlock()
		l.cancel()
		l.flushers.Wait()
		close(l.done)
		_ = l.ps.Close()
		l.bg.Wait()
		_ = l.client.Close()
	})
	return nil
}

// RequestCancel asks whichever instance runs runID to cancel it: every Log
// on this Redis, this one included, hands runID to its OnCancel handlers.
func (l *Log) RequestCancel(ctx context.Context, runID string) error {
	return l.mapErr(ctx, l.client.Publish(ctx, l.cancelChannel(), runID).Err(), "PUBLISH")
}

// OnCancel registers fn to be called, in a goroutine of its own, with the
// run ID of every cancel request this Log receives.
func (l *Log) OnCancel(fn func(runID string)) {
	l.cancelMu.Lock()
	l.onCancel = append(l.onCancel, fn)
	l.cancelMu.Unlock()
}

// RequestForgetThread tells every Log on this Redis, this one included,
// that the thread whose key is threadKey was deleted: each hands the key
// to its OnThreadForgotten handlers. A Log that is reconnecting to Redis
// meanwhile misses it; what it caches must not outlive that for long.
func (l *Log) RequestForgetThread(ctx context.Context, threadKey string) error {
	return l.mapErr(ctx, l.client.Publish(ctx, l.threadsChannel(), threadKey).Err(), "PUBLISH")
}

// OnThreadForgotten registers fn to be called, in a goroutine of its own,
// with the key of every deleted thread this Log hears of.
func (l *Log) OnThreadForgotten(fn func(threadKey string)) {
	l.cancelMu.Lock()
	l.onForget = append(l.onForget, fn)
	l.cancelMu.Unlock()
}

func (l *Log) keys(runID string) []string {
	tag := l.opts.Prefix + "{" + runID + "}:"
	return []string{tag + "events", tag + "meta"}
}

func (l *Log) notifyPrefix() string           { return l.opts.Prefix + "notify:" }
func (l *Log) notifyChannel(id string) string { return l.notifyPrefix() + id }
func (l *Log) cancelChannel() string          { return l.opts.Prefix + "cancel" }
func (l *Log) threadsChannel() string         { return l.opts.Prefix + "threads" }

var errClosed = agentstream.Errorf(agentstream.CodeUnavailable, "redislog: the event log is closed")

// transientPrefixes start the error replies of a Redis that is busy,
// loading, failing over or out of memory: it is unavailable, not wrong.
var transientPrefixes = []string{"LOADING", "BUSY", "READONLY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "OOM", "NOREPLICAS", "MAXCLIENTS"}

// mapErr turns a Redis error into an agentstream one: ctx's own error when
// ctx has ended, ErrConflict for the append script's ENDED and CONFLICT,
// ErrUnavailable for a Redis that cannot be reached or is busy, and
// CodeInternal for anything Redis refused.
func (l *Log) mapErr(ctx context.Context, err error, op string) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if redis.HasErrorPrefix(err, "ENDED") || redis.HasErrorPrefix(err, "CONFLICT") {
		return agentstream.Wrap(agentstream.CodeConflict, err, "the run's event log has ended, or another instance appends to it")
	}
	if errors.Is(err, redis.ErrClosed) || l.closing.Load() && errors.Is(err, context.Canceled) {
		return errClosed
	}
	var rerr redis.Error
	if errors.As(err, &rerr) {
		transient := false
		for _, p := range transientPrefixes {
			transient = transient || redis.HasErrorPrefix(err, p)
		}
		if !transient {
			return agentstream.Wrap(agentstream.CodeInternal, err, fmt.Sprintf("redislog: Redis at %s refused %s", l.addr, op))
		}
	}
	return agentstream.Wrap(agentstream.CodeUnavailable, err, fmt.Sprintf("redislog: Redis at %s is unavailable (%s)", l.addr, op))
}

// permanent reports whether a flush failed for good: the log ended or
// another writer took the seqs.
func permanent(err error) bool {
	return redis.HasErrorPrefix(err, "ENDED") || redis.HasErrorPrefix(err, "CONFLICT")
}

// counter counts the commands sent, as a go-redis hook.
type counter struct{ n atomic.Int64 }

func (c *counter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *counter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmd)
	}
}

func (c *counter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.n.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}
