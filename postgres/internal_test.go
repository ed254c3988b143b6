package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/internal/testenv"
)

func TestMapErr(t *testing.T) {
	ctx := context.Background()
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	domain := agentstream.Errorf(agentstream.CodeConflict, "run is completed, not running")
	pgErr := func(code, constraint string) error {
		return &pgconn.PgError{Code: code, ConstraintName: constraint, Message: "m"}
	}
	for _, tc := range []struct {
		name    string
		ctx     context.Context
		err     error
		want    agentstream.Code
		message string
	}{
		{"domain error", ctx, domain, agentstream.CodeConflict, "run is completed, not running"},
		{"unique thread", ctx, pgErr("23505", "threads_pkey"), agentstream.CodeConflict, "thread already exists"},
		{"unique run", ctx, pgErr("23505", "runs_pkey"), agentstream.CodeConflict, "run already exists"},
		{"unique active run", ctx, pgErr("23505", "runs_one_active_per_thread"), agentstream.CodeConflict, "thread already has an active run"},
		{"unique message", ctx, pgErr("23505", "messages_pkey"), agentstream.CodeConflict, "message already exists"},
		{"unique other", ctx, pgErr("23505", "x"), agentstream.CodeConflict, "already exists"},
		{"foreign key thread", ctx, pgErr("23503", "runs_thread_id_fkey"), agentstream.CodeNotFound, "thread not found"},
		{"foreign key run", ctx, pgErr("23503", "messages_run_id_fkey"), agentstream.CodeNotFound, "run not found"},
		{"NUL in text", ctx, pgErr("22021", ""), agentstream.CodeInvalidRequest, ""},
		{"NUL in jsonb", ctx, pgErr("22P05", ""), agentstream.CodeInvalidRequest, ""},
		{"index row too large", ctx, pgErr("54000", ""), agentstream.CodeInvalidRequest, "value too large to store"},
		{"serialization failure", ctx, pgErr("40001", ""), agentstream.CodeUnavailable, ""},
		{"deadlock", ctx, pgErr("40P01", ""), agentstream.CodeUnavailable, ""},
		{"connection failure", ctx, pgErr("08006", ""), agentstream.CodeUnavailable, ""},
		{"too many connections", ctx, pgErr("53300", ""), agentstream.CodeUnavailable, ""},
		{"disk full", ctx, pgErr("53100", ""), agentstream.CodeUnavailable, ""},
		{"admin shutdown", ctx, pgErr("57P01", ""), agentstream.CodeUnavailable, ""},
		{"starting up", ctx, pgErr("57P03", ""), agentstream.CodeUnavailable, ""},
		{"statement timeout", ctx, pgErr("57014", ""), agentstream.CodeUnavailable, ""},
		{"read only", ctx, pgErr("25006", ""), agentstream.CodeUnavailable, ""},
		{"bad password", ctx, pgErr("28P01", ""), agentstream.CodeUnavailable, ""},
		{"no database", ctx, pgErr("3D000", ""), agentstream.CodeUnavailable, ""},
		{"undefined table", ctx, pgErr("42P01", ""), agentstream.CodeInternal, ""},
		{"syntax error", ctx, pgErr("42601", ""), agentstream.CodeInternal, ""},
		{"unexpected EOF", ctx, fmt.Errorf("read: %w", io.ErrUnexpectedEOF), agentstream.CodeUnavailable, ""},
		{"conn closed", ctx, pgconn.ErrConnClosed, agentstream.CodeUnavailable, ""},
		{"other", ctx, errors.New("boom"), agentstream.CodeInternal, ""},
		{"no rows", ctx, pgx.ErrNoRows, agentstream.CodeInternal, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := mapErr(tc.ctx, "op", tc.err)
			if c := agentstream.CodeOf(got); c != tc.want {
				t.Errorf("mapErr(%v) = %v, code %s; want %s", tc.err, got, c, tc.want)
			}
			if tc.message != "" && agentstream.AsError(got).Message != tc.message {
				t.Errorf("mapErr(%v) message %q, want %q", tc.err, agentstream.AsError(got).Message, tc.message)
			}
			if !errors.Is(got, tc.err) {
				t.Errorf("mapErr(%v) = %v does not wrap the cause", tc.err, got)
			}
		})
	}

	// When the context is done, its error shows, whatever the driver said.
	for _, err := range []error{errors.New("read tcp: use of closed connection"), context.Canceled, pgErr("57014", "")} {
		got := mapErr(cancelled, "op", err)
		if !errors.Is(got, context.Canceled) || !errors.Is(got, err) {
			t.Errorf("mapErr with a cancelled context of %v = %v; want context.Canceled and the cause", err, got)
		}
	}
	if mapErr(ctx, "op", nil) != nil {
		t.Error("mapErr(nil) != nil")
	}
}

// TestMapRefusedValues: what PostgreSQL itself refuses, were it to get
// past the store's own checks (a key too large for its index, a NUL or
// invalid UTF-8 in text, \u0000 in jsonb), is ErrInvalid, not internal.
func TestMapRefusedValues(t *testing.T) {
	_, u := testenv.PostgresSchema(t)
	s, err := Open(t.Context(), u)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	// An id that does not compress: PostgreSQL would keep a repetitive one.
	var long strings.Builder
	for long.Len() < 3000 {
		long.WriteString(agentstream.NewID(""))
	}
	for _, tc := range []struct {
		name, id, title string
		metadata        any
		sqlstate        string
	}{
		{"long id", long.String(), "", nil, "54000"},
		{"NUL title", "t1", "a\x00b", nil, "22021"},
		{"invalid UTF-8 title", "t2", "a\xffb", nil, "22021"},
		{"NUL in jsonb", "t3", "", `{"k": "\u0000"}`, "22P05"},
	} {
		_, err := s.pool.Exec(t.Context(), `
			INSERT INTO threads (id, user_id, agent, title, metadata, created_at, updated_at)
			VALUES ($1, 'u', 'a', $2, $3, now(), now())`, tc.id, tc.title, tc.metadata)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != tc.sqlstate {
			t.Errorf("%s: %v, want SQLSTATE %s", tc.name, err, tc.sqlstate)
			continue
		}
		if got := s.mapErr(t.Context(), "create thread", err); !errors.Is(got, agentstream.ErrInvalid) {
			t.Errorf("%s: mapErr(%v) = %v, want ErrInvalid", tc.name, err, got)
		}
	}
}

// TestMapConnectError: a real connection failure is ErrUnavailable.
func TestMapConnectError(t *testing.T) {
	_, err := pgx.Connect(t.Context(), "postgres://u@127.0.0.1:1/db?sslmode=disable&connect_timeout=2")
	if err == nil {
		t.Fatal("connected to port 1")
	}
	if got := mapErr(t.Context(), "connect", err); !errors.Is(got, agentstream.ErrUnavailable) {
		t.Errorf("mapErr(%v) = %v, want ErrUnavailable", err, got)
	}
}

// TestMigrationsDownUp checks every migration's Down undoes its Up.
func TestMigrationsDownUp(t *testing.T) {
	schema, u := testenv.PostgresSchema(t)
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, testenv.DatabaseURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(context.Background()) }()

	s, err := Open(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	p, err := newProvider(s.pool, schema)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.Close() }()
	if len(p.ListSources()) == 0 {
		t.Fatal("no migrations embedded")
	}
	for range 2 {
		if _, err := p.DownTo(ctx, 0); err != nil {
			t.Fatalf("DownTo(0): %v", err)
		}
		var tables int
		if err := conn.QueryRow(ctx, `SELECT COUNT(*) FROM pg_tables WHERE schemaname = $1 AND tablename NOT LIKE 'goose%'`, schema).Scan(&tables); err != nil {
			t.Fatal(err)
		}
		if tables != 0 {
			t.Fatalf("%d tables left after migrating down", tables)
		}
		if _, err := p.Up(ctx); err != nil {
			t.Fatalf("Up: %v", err)
		}
	}
}
