package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/agentstream/agentstream"
)

// SQLSTATE codes the store tells apart.
// https://www.postgresql.org/docs/current/errcodes-appendix.html
const (
	uniqueViolation       = "23505"
	foreignKeyViolation   = "23503"
	serializationFailure  = "40001"
	deadlockDetected      = "40P01"
	readOnlyTransaction   = "25006" // a hot standby, e.g. after a failover
	queryCanceled         = "57014" // statement_timeout, or a cancel request
	adminShutdown         = "57P01"
	crashShutdown         = "57P02"
	cannotConnectNow      = "57P03"
	invalidCatalogName    = "3D000" // the database does not exist
	classDataException    = "22"    // e.g. 22021 invalid UTF-8 or NUL, 22P05 \u0000 in jsonb
	classProgramLimit     = "54"    // e.g. 54000: an index row too large (a key over about 2.7 kB)
	classConnection       = "08"
	classResources        = "53" // too many connections, disk full, out of memory
	classInvalidAuthority = "28" // authentication failed
)

// conflictMessages and notFoundMessages say, by constraint, what a unique
// or foreign key violation means.
var (
	conflictMessages = map[string]string{
		"threads_pkey":               "thread already exists",
		"runs_pkey":                  "run already exists",
		"runs_one_active_per_thread": "thread already has an active run",
		"messages_pkey":              "message already exists",
		"api_keys_pkey":              "key already exists",
		"api_keys_hash_key":          "key already exists",
	}
	notFoundMessages = map[string]string{
		"runs_thread_id_fkey":     "thread not found",
		"messages_thread_id_fkey": "thread not found",
		"messages_run_id_fkey":    "run not found",
	}
)

func errClosed() error {
	return agentstream.Errorf(agentstream.CodeUnavailable, "postgres store is closed")
}

// mapErr is mapErr for the store's methods: once the store is closed, a
// failure is ErrUnavailable, "store is closed".
func (s *Store) mapErr(ctx context.Context, op string, err error) error {
	if err != nil && s.closed.Load() && ctx.Err() == nil {
		var e *agentstream.Error
		if !errors.As(err, &e) {
			return agentstream.Wrap(agentstream.CodeUnavailable, fmt.Errorf("postgres: %s: %w", op, err), "postgres store is closed")
		}
	}
	return mapErr(ctx, op, err)
}

// mapErr turns an error of operation op into the error the store returns:
//
//   - an *agentstream.Error is returned as it is;
//   - when ctx is done, an error that wraps ctx's error (errors.Is works)
//     and is otherwise left alone, as package sqlite does;
//   - unique_violation (23505) is ErrConflict, foreign_key_violation
//     (23503) ErrNotFound, a data exception (class 22, such as a NUL
//     character or invalid UTF-8 in text) or a value over a limit (class
//     54, such as a key too large for its index) ErrInvalid: the input is
//     at fault, not the store (the store checks its input against
//     agentstream's rules first, so these are a second line);
//   - a failure to reach or use the database is ErrUnavailable: connection
//     errors, network errors and timeouts, SQLSTATE classes 08, 28 and 53,
//     a server shutting down or starting (57P01-57P03), a statement timeout
//     (57014), a read-only database (25006), and a serialization failure or
//     deadlock (40001, 40P01) that retrying did not get past;
//   - anything else is wrapped as "postgres: op: …", which
//     agentstream.AsError reports as internal.
func mapErr(ctx context.Context, op string, err error) error {
	if err == nil {
		return nil
	}
	var e *agentstream.Error
	if errors.As(err, &e) {
		return err
	}
	wrapped := fmt.Errorf("postgres: %s: %w", op, err)
	if ctxErr := ctx.Err(); ctxErr != nil {
		if errors.Is(err, ctxErr) {
			return wrapped
		}
		return fmt.Errorf("postgres: %s: %w (%w)", op, ctxErr, err)
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		code := pgErr.Code
		switch {
		case code == uniqueViolation:
			msg, ok := conflictMessages[pgErr.ConstraintName]
			if !ok {
				msg = "already exists"
			}
			return agentstream.Wrap(agentstream.CodeConflict, wrapped, msg)
		case code == foreignKeyViolation:
			msg, ok := notFoundMessages[pgErr.ConstraintName]
			if !ok {
				msg = "not found"
			}
			return agentstream.Wrap(agentstream.CodeNotFound, wrapped, msg)
		case strings.HasPrefix(code, classDataException):
			return agentstream.Wrap(agentstream.CodeInvalidRequest, wrapped,
				"value cannot be stored (PostgreSQL refuses NUL characters and invalid UTF-8)")
		case strings.HasPrefix(code, classProgramLimit):
			return agentstream.Wrap(agentstream.CodeInvalidRequest, wrapped, "value too large to store")
		case code == serializationFailure, code == deadlockDetected:
			return agentstream.Wrap(agentstream.CodeUnavailable, wrapped, "database busy, try again")
		case strings.HasPrefix(code, classConnection), strings.HasPrefix(code, classResources),
			strings.HasPrefix(code, classInvalidAuthority),
			code == adminShutdown, code == crashShutdown, code == cannotConnectNow,
			code == queryCanceled, code == readOnlyTransaction, code == invalidCatalogName:
			return agentstream.Wrap(agentstream.CodeUnavailable, wrapped, "database unavailable")
		}
		return wrapped
	}
	if isConnectionError(err) {
		return agentstream.Wrap(agentstream.CodeUnavailable, wrapped, "database unavailable")
	}
	return wrapped
}

// isConnectionError reports whether err (not a PostgreSQL error) comes from
// failing to reach or talk to the server.
func isConnectionError(err error) bool {
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	switch {
	case errors.As(err, &connectErr), errors.As(err, &netErr),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, net.ErrClosed), errors.Is(err, pgconn.ErrConnClosed),
		pgconn.Timeout(err):
		return true
	}
	return false
}

// retryable reports whether a transaction that failed with err may be run
// again: PostgreSQL aborted it for a serialization failure or a deadlock,
// or it failed before anything was sent to the server.
func retryable(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code == serializationFailure || pgErr.Code == deadlockDetected
	}
	return pgconn.SafeToRetry(err)
}
