package sqlite

import (
	"context"
	"database/sql"
	"sync"

	"github.com/agentstream/agentstream"
)

// maxBatch bounds how many write transactions share one SQLite
// transaction.
const maxBatch = 64

// batcher runs the store's write transactions on its one write connection,
// in the order they come, committing the ones that queued up together in
// one SQLite transaction: each in a savepoint of its own, so that one that
// fails is undone alone. SQLite commits one transaction at a time, and a
// commit (and its BEGIN IMMEDIATE) is a large part of the cost of the small
// transactions a run makes; under load, grouping them is what lets one
// writer keep up with many runs (see BENCHMARKS.md). Alone, a transaction
// runs as before, without a savepoint.
type batcher struct {
	db *sql.DB
	c  *stmtCache

	mu     sync.Mutex
	queue  []*writeReq
	closed bool
	// largest is the most transactions one batch has held (for tests).
	largest int
	wake    chan struct{} // a token when the queue is not empty
	done    chan struct{} // closed when the loop has ended
}

type writeReq struct {
	ctx  context.Context
	fn   func(tx wtx) error
	err  error
	done chan struct{}
}

var errStoreClosed = agentstream.Errorf(agentstream.CodeUnavailable, "the SQLite store is closed")

func newBatcher(db *sql.DB, c *stmtCache) *batcher {
	b := &batcher{db: db, c: c, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go b.loop()
	return b
}

// do runs fn in a write transaction and returns its error, or the commit's.
// It waits for the outcome even when ctx ends meanwhile: the transaction
// may be committing with others.
func (b *batcher) do(ctx context.Context, fn func(tx wtx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	req := &writeReq{ctx: ctx, fn: fn, done: make(chan struct{})}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return errStoreClosed
	}
	b.queue = append(b.queue, req)
	b.mu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default: // the loop has a token already
	}
	<-req.done
	return req.err
}

// close lets the queued transactions run, then ends the loop.
func (b *batcher) close() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default:
	}
	<-b.done
}

func (b *batcher) loop() {
	defer close(b.done)
	for range b.wake {
		for {
			b.mu.Lock()
			n := min(len(b.queue), maxBatch)
			b.largest = max(b.largest, n)
			batch := append([]*writeReq(nil), b.queue[:n]...)
			b.queue = b.queue[n:]
			closed := b.closed && len(b.queue) == 0
			b.mu.Unlock()
			if n > 0 {
				b.run(batch)
				// With the connection free again, prepare what the
				// transactions met for the first time.
				b.c.prepareWanted(context.Background())
			}
			if closed {
				return
			}
			if n == 0 {
				break
			}
		}
	}
}

// run executes a batch and tells each request its outcome.
func (b *batcher) run(batch []*writeReq) {
	defer func() {
		for _, r := range batch {
			close(r.done)
		}
	}()
	live := batch[:0:0]
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.err = err // never started: nothing written
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	// Statements ignore their contexts' ends: interrupting one statement
	// would roll back the whole SQLite transaction, with the others' work.
	ctx := context.Background()
	tx, err := b.db.BeginTx(ctx, nil)
	if err != nil {
		for _, r := range live {
			r.err = err
		}
		return
	}
	w := wtx{tx: tx, c: b.c, detach: true}
	if len(live) == 1 {
		r := live[0]
		if r.err = r.fn(w); r.err != nil {
			_ = tx.Rollback() // fn's error is the one to report
			return
		}
		r.err = tx.Commit()
		return
	}
	for _, r := range live {
		if _, err := tx.ExecContext(ctx, "SAVEPOINT w"); err != nil {
			b.fail(tx, live, err)
			return
		}
		if r.err = r.fn(w); r.err != nil {
			if _, err := tx.ExecContext(ctx, "ROLLBACK TO w"); err != nil {
				b.fail(tx, live, err)
				return
			}
		}
		if _, err := tx.ExecContext(ctx, "RELEASE w"); err != nil {
			b.fail(tx, live, err)
			return
		}
	}
	if err := tx.Commit(); err != nil {
		for _, r := range live {
			if r.err == nil {
				r.err = err
			}
		}
	}
}

// fail rolls the whole batch back after a savepoint could not be used:
// every request fails with err, its own error or not.
func (b *batcher) fail(tx *sql.Tx, live []*writeReq, err error) {
	_ = tx.Rollback() // err is the one to report
	for _, r := range live {
		r.err = err
	}
}
