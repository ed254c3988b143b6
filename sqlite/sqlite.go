// Package sqlite is an agentstream.Store on SQLite, through the pure-Go
// driver modernc.org/sqlite (no cgo).
//
// The schema lives in numbered migrations embedded in the binary
// (migrations/NNNNN_name.sql) and applied by goose when the store opens.
//
// Storage conventions:
//   - Times are INTEGER unix microseconds: a time comes back truncated to
//     the microsecond, in UTC.
//   - Metadata, context and tool calls are JSON text. A map or slice with no
//     entries is stored as NULL and read back as nil; numbers in maps come
//     back as float64, as encoding/json decodes them.
//   - ListMessages returns an empty, non-nil slice for a thread without
//     messages.
//
// A store opened with Options.Exclusive owns its file: one server per
// file (see Options).
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"github.com/pressly/goose/v3"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/agentstream/agentstream"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store is an agentstream.Store on one SQLite database file. It is safe for
// concurrent use.
//
// SQLite allows one writer at a time. Store writes through a pool of exactly
// one connection, so concurrent writers queue in database/sql (in order,
// honouring their contexts) instead of contending for the file lock inside
// SQLite, where a deferred transaction that reads and then writes can fail
// at once with SQLITE_BUSY (the busy handler cannot help a transaction whose
// snapshot is stale) and where busy_timeout retries are sleep-and-poll and
// unfair. Write transactions still BEGIN IMMEDIATE, so that another process
// writing the same file is waited for (busy_timeout) at BEGIN rather than
// failing mid-transaction. Reads go through a separate pool of read-only
// connections: in WAL mode readers see the last committed state and never
// block, or are blocked by, the writer.
type Store struct {
	w *sql.DB // writes: one connection
	r *sql.DB // reads: several query_only connections; == w for :memory:
	// wc and rc hold the prepared statements of w and r.
	wc, rc *stmtCache
	// batch runs the write transactions.
	batch *batcher
	// lock is held for the life of an Exclusive store.
	lock *fileLock

	closeOnce sync.Once
	closeErr  error
}

var _ agentstream.Store = (*Store)(nil)

// Open opens (creating it if needed) the SQLite database at path and
// applies any pending migrations. path is a file path; ":memory:" opens a
// private in-memory database (one connection, for tests and experiments).
// The directory holding path must exist.
func Open(ctx context.Context, path string) (*Store, error) {
	return OpenWith(ctx, path, Options{})
}

// OpenWith is Open with options. With Exclusive, a file another Store
// holds gives an *InUseError, naming the file and its owner.
func OpenWith(ctx context.Context, path string, opts Options) (*Store, error) {
	s, err := open(ctx, path, opts)
	if inUse := (*InUseError)(nil); errors.As(err, &inUse) {
		return nil, err // it names the file already
	}
	if err != nil {
		return nil, fmt.Errorf("open sqlite store at %q: %w", path, err)
	}
	s.wc, s.rc = newStmtCache(s.w), newStmtCache(s.r)
	if s.r == s.w {
		s.rc = s.wc
	}
	s.batch = newBatcher(s.w, s.wc)
	return s, nil
}

func open(ctx context.Context, path string, opts Options) (*Store, error) {
	if path == "" {
		return nil, errors.New("empty path")
	}
	memory := path == ":memory:"
	if !memory {
		// SQLite only reports "unable to open database file"; say why.
		dir := filepath.Dir(path)
		fi, err := os.Stat(dir)
		if err != nil {
			return nil, fmt.Errorf("parent directory: %w", err)
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("parent directory: %s is not a directory", dir)
		}
	}
	s := &Store{}
	fail := func(err error) (*Store, error) {
		_ = s.Close() // the open error is the one worth reporting
		return nil, err
	}
	if opts.Exclusive && !memory {
		// Before the first connection: a file another owner holds is
		// not touched, not even migrated.
		l, err := acquireLock(path)
		if err != nil {
			return nil, err
		}
		s.lock = l
	}

	w, err := sql.Open("sqlite", dsn(path, true))
	if err != nil {
		return fail(err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	s.w, s.r = w, w
	if err := w.PingContext(ctx); err != nil {
		return fail(fmt.Errorf("connect: %w", err))
	}
	if !memory {
		// journal_mode=WAL is persistent, but a pragma that cannot switch
		// (for example on a read-only medium) does not fail: check.
		var mode string
		if err := w.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
			return fail(fmt.Errorf("read journal mode: %w", err))
		}
		if !strings.EqualFold(mode, "wal") {
			return fail(fmt.Errorf("journal mode is %q, want wal", mode))
		}
	}
	if err := migrate(ctx, w); err != nil {
		return fail(fmt.Errorf("migrate: %w", err))
	}
	if !memory {
		// Opened after the migrations so that no read connection holds an
		// old schema.
		r, err := sql.Open("sqlite", dsn(path, false))
		if err != nil {
			return fail(err)
		}
		n := max(4, runtime.GOMAXPROCS(0))
		r.SetMaxOpenConns(n)
		r.SetMaxIdleConns(n)
		s.r = r
		if err := r.PingContext(ctx); err != nil {
			return fail(fmt.Errorf("connect reader: %w", err))
		}
	}
	return s, nil
}

// dsn returns the driver's data source name for path: a file: URI (so that
// any character of path is allowed) with the connection's pragmas.
func dsn(path string, writer bool) string {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(5000)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "journal_mode(WAL)")
	// In WAL mode NORMAL cannot corrupt the database; a power loss can
	// lose the last commits, not the process dying.
	q.Add("_pragma", "synchronous(NORMAL)")
	if writer {
		q.Set("_txlock", "immediate")
	} else {
		q.Add("_pragma", "query_only(1)")
	}
	if path == ":memory:" {
		return "file::memory:?" + q.Encode()
	}
	// In a file: URI, SQLite decodes %HH escapes in the path and ends it
	// at '?' or '#'.
	p := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
	if strings.HasPrefix(p, "//") {
		// "file://x" would name an authority.
		p = "/" + strings.TrimLeft(p, "/")
	}
	return "file:" + p + "?" + q.Encode()
}

// migrate applies the embedded migrations that db lacks.
func migrate(ctx context.Context, db *sql.DB) error {
	fsys, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, db, fsys, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return err
	}
	// p.Close would close db: the provider is dropped instead.
	_, err = p.Up(ctx)
	return err
}

// Ping checks both connection pools.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.w.PingContext(ctx); err != nil {
		return fmt.Errorf("sqlite: ping: %w", err)
	}
	if s.r != s.w {
		if err := s.r.PingContext(ctx); err != nil {
			return fmt.Errorf("sqlite: ping reader: %w", err)
		}
	}
	return nil
}

// Close closes the database, then releases an Exclusive store's lock.
// Later calls return the first call's result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		if s.batch != nil {
			s.batch.close()
		}
		if s.wc != nil {
			s.wc.close()
			s.rc.close()
		}
		var errs []error
		if s.r != s.w {
			errs = append(errs, s.r.Close())
		}
		if s.w != nil {
			errs = append(errs, s.w.Close())
		}
		// Last: the next owner starts once this one has written all.
		if s.lock != nil {
			errs = append(errs, s.lock.release())
		}
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

// isUniqueViolation reports whether err is SQLite refusing a duplicate
// primary key or a unique index entry.
func isUniqueViolation(err error) bool {
	var e *sqlite.Error
	if !errors.As(err, &e) {
		return false
	}
	switch e.Code() {
	case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
		return true
	}
	return false
}
