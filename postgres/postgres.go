// Package postgres is an agentstream.Store on PostgreSQL, through
// github.com/jackc/pgx/v5 and its connection pool (pgxpool).
//
// The schema lives in numbered migrations embedded in the binary
// (migrations/NNNNN_name.sql) and applied by goose when the store opens,
// under a PostgreSQL advisory lock so that instances starting together
// migrate one at a time.
//
// The store's tables live in the connection's current schema: the first
// schema of search_path that exists. To keep several stores in one
// database, give each a schema and name it in the URL, either as a
// parameter (postgres://host/db?search_path=myschema) or through the
// server's options (postgres://host/db?options=-csearch_path%3Dmyschema).
// The schema must exist; Open creates the tables in it, not the schema.
//
// Storage conventions, the same as package sqlite's:
//   - Times are timestamptz: a time comes back truncated to the
//     microsecond, in UTC.
//   - Metadata, context and tool calls are jsonb. A map or slice with no
//     entries is stored as NULL and read back as nil; numbers in maps come
//     back as float64, as encoding/json decodes them.
//   - ListMessages returns an empty, non-nil slice for a thread without
//     messages.
//
// PostgreSQL cannot store the NUL character in text or jsonb, nor text that
// is not valid UTF-8: writing such a value fails with ErrInvalid.
//
// Concurrency: every transaction that appends messages to a thread first
// locks the thread's row, then the run's, so that message numbers (Seq) are
// assigned one writer at a time and a run's status cannot change under a
// checkpoint or a finish. The rule of one queued or running run per thread
// is a partial unique index, which holds across processes.
package postgres

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"github.com/agentstream/agentstream"
)

//go:embed migrations/*.sql
var migrations embed.FS

// DefaultConnectTimeout bounds each attempt to connect to the database
// when the URL sets no connect_timeout.
const DefaultConnectTimeout = 5 * time.Second

// leaseConns is the size of the lease pool: a renewal and a sweep.
const leaseConns = 2

// Store is an agentstream.Store on a PostgreSQL database. It is safe for
// concurrent use, and several Stores (in one process or many) may use the
// same database and schema at once.
type Store struct {
	pool *pgxpool.Pool
	// leases is a pool of its own for renewing and sweeping leases, so
	// that a renewal never queues behind the runs' writes: a lease that
	// ran out under load would end live runs.
	leases *pgxpool.Pool

	closed    atomic.Bool
	closeOnce sync.Once
}

var _ agentstream.Store = (*Store)(nil)

// Open connects to the PostgreSQL database at url and applies any pending
// migrations. url is a postgres:// URL or a keyword/value connection string,
// as pgx (and libpq) accept them, including pgxpool's pool_* settings; PG*
// environment variables fill in what it leaves out.
//
// Open fails, rather than waiting, when the database cannot be reached:
// each connection attempt is bounded by the URL's connect_timeout, or
// DefaultConnectTimeout, and Open connects before it returns. Such a failure
// is an agentstream.ErrUnavailable.
func Open(ctx context.Context, url string) (*Store, error) {
	if url == "" {
		return nil, errors.New("open postgres store: empty database URL")
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgx's message quotes the URL with its password masked.
		return nil, fmt.Errorf("open postgres store: %w", err)
	}
	if cfg.ConnConfig.ConnectTimeout <= 0 {
		cfg.ConnConfig.ConnectTimeout = DefaultConnectTimeout
	}
	s, err := open(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open postgres store at %s: %w", describe(cfg), err)
	}
	return s, nil
}

// describe names the database cfg connects to, without credentials.
func describe(cfg *pgxpool.Config) string {
	c := cfg.ConnConfig
	return fmt.Sprintf("%s:%d/%s (user %s)", c.Host, c.Port, c.Database, strconv.Quote(c.User))
}

func open(ctx context.Context, cfg *pgxpool.Config) (*Store, error) {
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	lcfg := cfg.Copy()
	lcfg.MaxConns, lcfg.MinConns = leaseConns, 0
	leases, err := pgxpool.NewWithConfig(ctx, lcfg)
	if err != nil {
		pool.Close()
		return nil, err
	}
	s := &Store{pool: pool, leases: leases}
	fail := func(err error) (*Store, error) {
		pool.Close()
		leases.Close()
		return nil, err
	}
	if err := pool.Ping(ctx); err != nil {
		return fail(mapErr(ctx, "connect", err))
	}
	var schema *string
	if err := pool.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		return fail(mapErr(ctx, "read current schema", err))
	}
	if schema == nil {
		var path string
		if err := pool.QueryRow(ctx, `SHOW search_path`).Scan(&path); err != nil {
			return fail(mapErr(ctx, "read search_path", err))
		}
		return fail(fmt.Errorf("no schema of search_path %q exists: create the schema first", path))
	}
	if err := migrate(ctx, pool, *schema); err != nil {
		return fail(fmt.Errorf("migrate schema %q: %w", *schema, mapErr(ctx, "migrate", err)))
	}
	return s, nil
}

// migrate applies the embedded migrations that the current schema lacks.
func migrate(ctx context.Context, pool *pgxpool.Pool, schema string) error {
	p, err := newProvider(pool, schema)
	if err != nil {
		return err
	}
	_, err = p.Up(ctx)
	return errors.Join(err, p.Close())
}

// newProvider returns a goose provider of the embedded migrations on pool,
// which the provider's Close leaves open.
func newProvider(pool *pgxpool.Pool, schema string) (*goose.Provider, error) {
	fsys, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return nil, err
	}
	db := stdlib.OpenDBFromPool(pool) // closing db leaves pool open
	p, err := goose.NewProvider(goose.DialectPostgres, db, fsys,
		goose.WithDisableGlobalRegistry(true),
		goose.WithSessionLocker(advisoryLock(migrationLockID(schema))))
	if err != nil {
		return nil, errors.Join(err, db.Close())
	}
	return p, nil
}

// migrationLockID is the advisory lock that serialises the migrations of
// one schema: stores in other schemas of the database do not wait for it.
func migrationLockID(schema string) int64 {
	h := fnv.New64a()
	h.Write([]byte("agentstream/postgres migrations\x00"))
	h.Write([]byte(schema))
	return int64(h.Sum64())
}

// advisoryLock is a goose session locker on a session-level advisory lock.
// Unlike goose's own PostgreSQL locker, which polls every five seconds, it
// waits in pg_advisory_lock, so a store opening while another migrates
// goes on as soon as the other is done; ctx bounds the wait.
type advisoryLock int64

func (l advisoryLock) SessionLock(ctx context.Context, conn *sql.Conn) error {
	_, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, int64(l))
	return err
}

func (l advisoryLock) SessionUnlock(ctx context.Context, conn *sql.Conn) error {
	var ok bool
	if err := conn.QueryRowContext(ctx, `SELECT pg_advisory_unlock($1)`, int64(l)).Scan(&ok); err != nil {
		return err
	}
	if !ok {
		return errors.New("migration lock was not held")
	}
	return nil
}

// Ping checks that the database can be reached.
func (s *Store) Ping(ctx context.Context) error {
	if s.closed.Load() {
		return errClosed()
	}
	return s.mapErr(ctx, "ping", s.pool.Ping(ctx))
}

// Close closes the connection pool, waiting for connections in use to be
// released. Later calls do nothing and return nil; the store's methods fail
// with ErrUnavailable once it is closed.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		s.pool.Close()
		s.leases.Close()
	})
	return nil
}
