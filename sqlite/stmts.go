package sqlite

import (
	"context"
	"database/sql"
	"sync"
)

// stmtCache keeps a prepared statement per query text for one database
// handle. Compiling a statement is most of the cost of the short ones a
// run writes (measured: half of the store's CPU in a streaming benchmark),
// and database/sql prepares a query given as text anew on every call.
// A *sql.Stmt re-prepares itself on each connection it meets and keeps it.
//
// The writer has one connection: a statement cannot be prepared on its
// handle while a transaction holds that connection (it would wait for
// itself). A write transaction that meets a new query runs it as text and
// leaves it in wanted; prepareWanted prepares those once the transaction
// has let the connection go.
type stmtCache struct {
	db     *sql.DB
	m      sync.Map // query → *sql.Stmt
	wanted sync.Map // query → struct{}
}

func newStmtCache(db *sql.DB) *stmtCache { return &stmtCache{db: db} }

func (c *stmtCache) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	if st, ok := c.m.Load(query); ok {
		return st.(*sql.Stmt), nil
	}
	st, err := c.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if prev, loaded := c.m.LoadOrStore(query, st); loaded {
		_ = st.Close() // another caller prepared it first
		return prev.(*sql.Stmt), nil
	}
	return st, nil
}

// cached returns the statement of a query already prepared.
func (c *stmtCache) cached(query string) (*sql.Stmt, bool) {
	st, ok := c.m.Load(query)
	if !ok {
		c.wanted.Store(query, struct{}{})
		return nil, false
	}
	return st.(*sql.Stmt), true
}

// prepareWanted prepares the queries transactions met for the first time.
// A failure leaves the query to run as text, as before.
func (c *stmtCache) prepareWanted(ctx context.Context) {
	c.wanted.Range(func(k, _ any) bool {
		c.wanted.Delete(k)
		_, _ = c.stmt(ctx, k.(string)) // on failure the query keeps running as text
		return true
	})
}

// QueryContext runs a cached query on the handle.
func (c *stmtCache) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	st, err := c.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

// QueryRowContext runs a cached query on the handle; a query that cannot be
// prepared is run as text, so that its error reaches Scan.
func (c *stmtCache) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	st, err := c.stmt(ctx, query)
	if err != nil {
		return c.db.QueryRowContext(ctx, query, args...)
	}
	return st.QueryRowContext(ctx, args...)
}

// close closes every cached statement.
func (c *stmtCache) close() {
	c.m.Range(func(k, v any) bool {
		_ = v.(*sql.Stmt).Close() // the database closes right after
		c.m.Delete(k)
		return true
	})
}

// wtx is a write transaction whose statements come from the cache.
type wtx struct {
	tx *sql.Tx
	c  *stmtCache
	// detach runs statements without their contexts' cancellation: the
	// transaction is shared (see batcher).
	detach bool
}

func (t wtx) context(ctx context.Context) context.Context {
	if t.detach {
		return context.WithoutCancel(ctx)
	}
	return ctx
}

func (t wtx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	ctx = t.context(ctx)
	if st, ok := t.c.cached(query); ok {
		return t.tx.StmtContext(ctx, st).ExecContext(ctx, args...)
	}
	return t.tx.ExecContext(ctx, query, args...)
}

func (t wtx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	ctx = t.context(ctx)
	if st, ok := t.c.cached(query); ok {
		return t.tx.StmtContext(ctx, st).QueryContext(ctx, args...)
	}
	return t.tx.QueryContext(ctx, query, args...)
}

func (t wtx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	ctx = t.context(ctx)
	if st, ok := t.c.cached(query); ok {
		return t.tx.StmtContext(ctx, st).QueryRowContext(ctx, args...)
	}
	return t.tx.QueryRowContext(ctx, query, args...)
}
