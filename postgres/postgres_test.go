package postgres_test

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/internal/testenv"
	"github.com/agentstream/agentstream/postgres"
	"github.com/agentstream/agentstream/storetest"
)

// databaseURL returns the test database's URL, or skips (fails in CI).
func databaseURL(t testing.TB) string {
	t.Helper()
	return testenv.DatabaseURL(t)
}

// newSchema creates an empty schema, dropped when t ends, and returns its
// name and a URL whose search_path is that schema alone.
func newSchema(t testing.TB) (schema, schemaURL string) {
	t.Helper()
	return testenv.PostgresSchema(t)
}

// withParam returns the connection string u with a parameter set.
func withParam(t testing.TB, u, key, value string) string {
	t.Helper()
	return testenv.WithParam(t, u, key, value)
}

// migrationCount is the number of migrations the store embeds.
func migrationCount(t testing.TB) int {
	t.Helper()
	files, err := fs.Glob(os.DirFS("migrations"), "*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("no migrations found: %v", err)
	}
	return len(files)
}

// queryInt runs a query returning one integer.
func queryInt(t testing.TB, u, sql string, args ...any) int64 {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer func() { _ = conn.Close(ctx) }()
	var n int64
	if err := conn.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func openURL(t testing.TB, u string) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(t.Context(), u)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// openFresh opens a store in a new schema. The caller closes it.
func openFresh(t testing.TB) *postgres.Store {
	t.Helper()
	_, u := newSchema(t)
	return openURL(t, u)
}

func closeStore(t testing.TB, s *postgres.Store) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

func TestStore(t *testing.T) {
	databaseURL(t)
	storetest.Run(t, func(t testing.TB) agentstream.Store { return openFresh(t) })
}

// TestStoreTwoInstances runs the suite against two stores on one schema,
// taking turns call by call, as two server processes sharing a database
// would: the concurrency tests then race writers of different pools.
func TestStoreTwoInstances(t *testing.T) {
	databaseURL(t)
	storetest.Run(t, func(t testing.TB) agentstream.Store {
		_, u := newSchema(t)
		return &twoStores{stores: [2]*postgres.Store{openURL(t, u), openURL(t, u)}}
	})
}

// twoStores sends each call to one of two stores, in turn.
type twoStores struct {
	stores [2]*postgres.Store
	n      atomic.Uint64
}

func (s *twoStores) next() *postgres.Store { return s.stores[s.n.Add(1)%2] }

func (s *twoStores) CreateThread(ctx context.Context, t agentstream.Thread) error {
	return s.next().CreateThread(ctx, t)
}

func (s *twoStores) GetThread(ctx context.Context, userID, threadID string) (agentstream.Thread, error) {
	return s.next().GetThread(ctx, userID, threadID)
}

func (s *twoStores) ListMessages(ctx context.Context, threadID string) ([]agentstream.Message, error) {
	return s.next().ListMessages(ctx, threadID)
}

func (s *twoStores) ListMessagesAfter(ctx context.Context, threadID string, afterSeq int64, limit int) ([]agentstream.Message, error) {
	return s.next().ListMessagesAfter(ctx, threadID, afterSeq, limit)
}

func (s *twoStores) ListThreads(ctx context.Context, userID string, after *agentstream.ListPosition, limit int) ([]agentstream.Thread, error) {
	return s.next().ListThreads(ctx, userID, after, limit)
}

func (s *twoStores) UpdateThread(ctx context.Context, userID, threadID string, u agentstream.ThreadUpdate) (agentstream.Thread, error) {
	return s.next().UpdateThread(ctx, userID, threadID, u)
}

func (s *twoStores) DeleteThread(ctx context.Context, userID, threadID string) error {
	return s.next().DeleteThread(ctx, userID, threadID)
}

func (s *twoStores) ListRuns(ctx context.Context, threadID string, after *agentstream.ListPosition, limit int) ([]agentstream.Run, error) {
	return s.next().ListRuns(ctx, threadID, after, limit)
}

func (s *twoStores) CreateRun(ctx context.Context, run agentstream.Run, input agentstream.Message, history ...agentstream.Message) (agentstream.Message, error) {
	return s.next().CreateRun(ctx, run, input, history...)
}

func (s *twoStores) CreateRunLimited(ctx context.Context, run agentstream.Run, lim agentstream.RunLimits, input agentstream.Message, history ...agentstream.Message) (agentstream.Message, error) {
	return s.next().CreateRunLimited(ctx, run, lim, input, history...)
}

func (s *twoStores) CreateThreadRun(ctx context.Context, t agentstream.Thread, run agentstream.Run, lim agentstream.RunLimits, input agentstream.Message, history ...agentstream.Message) (agentstream.Message, error) {
	return s.next().CreateThreadRun(ctx, t, run, lim, input, history...)
}

func (s *twoStores) AddUsage(ctx context.Context, userID string, at time.Time, tokens int64) error {
	return s.next().AddUsage(ctx, userID, at, tokens)
}

func (s *twoStores) Usage(ctx context.Context, userID string, at time.Time) (int64, error) {
	return s.next().Usage(ctx, userID, at)
}

func (s *twoStores) StartRun(ctx context.Context, runID string, at time.Time) error {
	return s.next().StartRun(ctx, runID, at)
}

func (s *twoStores) CheckpointRun(ctx context.Context, runID string, msgs []agentstream.Message) error {
	return s.next().CheckpointRun(ctx, runID, msgs)
}

func (s *twoStores) CheckpointText(ctx context.Context, runID string, m agentstream.Message, at int64) error {
	return s.next().CheckpointText(ctx, runID, m, at)
}

func (s *twoStores) FinishRun(ctx context.Context, run agentstream.Run, msgs []agentstream.Message) error {
	return s.next().FinishRun(ctx, run, msgs)
}

func (s *twoStores) InterruptRuns(ctx context.Context, at time.Time, e agentstream.ErrorInfo) ([]agentstream.Run, error) {
	return s.next().InterruptRuns(ctx, at, e)
}

func (s *twoStores) RenewLeases(ctx context.Context, owner string, until time.Time) ([]string, error) {
	return s.next().RenewLeases(ctx, owner, until)
}

func (s *twoStores) InterruptExpiredRuns(ctx context.Context, at time.Time, e agentstream.ErrorInfo) ([]agentstream.Run, error) {
	return s.next().InterruptExpiredRuns(ctx, at, e)
}

func (s *twoStores) CreateKey(ctx context.Context, k agentstream.APIKey) error {
	return s.next().CreateKey(ctx, k)
}

func (s *twoStores) ListKeys(ctx context.Context, userID string) ([]agentstream.APIKey, error) {
	return s.next().ListKeys(ctx, userID)
}

func (s *twoStores) RevokeKey(ctx context.Context, id string, at time.Time) (agentstream.APIKey, error) {
	return s.next().RevokeKey(ctx, id, at)
}

func (s *twoStores) KeyByHash(ctx context.Context, hash string) (agentstream.APIKey, error) {
	return s.next().KeyByHash(ctx, hash)
}

func (s *twoStores) HasKeys(ctx context.Context) (bool, error) {
	return s.next().HasKeys(ctx)
}

func (s *twoStores) GetRun(ctx context.Context, userID, runID string) (agentstream.Run, error) {
	return s.next().GetRun(ctx, userID, runID)
}

func (s *twoStores) SetEndSeq(ctx context.Context, runID string, seq int64) (int64, error) {
	return s.next().SetEndSeq(ctx, runID, seq)
}

func (s *twoStores) Ping(ctx context.Context) error {
	return errors.Join(s.stores[0].Ping(ctx), s.stores[1].Ping(ctx))
}

func (s *twoStores) Close() error { return errors.Join(s.stores[0].Close(), s.stores[1].Close()) }

func newThread(id string) agentstream.Thread {
	now := time.Now()
	return agentstream.Thread{ID: id, UserID: "u", Agent: "a", Title: "t", CreatedAt: now, UpdatedAt: now}
}

// TestReopen: the migrations are applied once; opening again, and opening
// several stores at once, is fine and keeps the data.
func TestReopen(t *testing.T) {
	schema, u := newSchema(t)
	s := openURL(t, u)
	if err := s.CreateThread(t.Context(), newThread("thr_1")); err != nil {
		t.Fatal(err)
	}
	closeStore(t, s)

	for range 2 {
		s = openURL(t, u)
		if _, err := s.GetThread(t.Context(), "u", "thr_1"); err != nil {
			t.Fatalf("GetThread after reopening: %v", err)
		}
		closeStore(t, s)
	}

	versions := queryInt(t, u, `SELECT COUNT(*) FROM goose_db_version WHERE version_id > 0`)
	if want := migrationCount(t); versions != int64(want) {
		t.Errorf("goose_db_version has %d migrations applied, want %d", versions, want)
	}
	// The tables are in the schema named by search_path, and nowhere else.
	tables := queryInt(t, u, `SELECT COUNT(*) FROM pg_tables WHERE tablename IN ('threads', 'runs', 'messages', 'goose_db_version') AND schemaname = $1`, schema)
	if tables != 4 {
		t.Errorf("%d of the store's 4 tables in schema %s", tables, schema)
	}
}

// TestOpenConcurrently: stores opening together on an empty schema migrate
// one at a time (the advisory lock), and all open.
func TestOpenConcurrently(t *testing.T) {
	_, u := newSchema(t)
	const n = 6
	stores := make([]*postgres.Store, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { stores[i], errs[i] = postgres.Open(t.Context(), u) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Open %d: %v", i, err)
			continue
		}
		if err := stores[i].CreateThread(t.Context(), newThread(agentstream.NewID("thr_"))); err != nil {
			t.Errorf("store %d: CreateThread: %v", i, err)
		}
		closeStore(t, stores[i])
	}
	if versions, want := queryInt(t, u, `SELECT COUNT(*) FROM goose_db_version WHERE version_id > 0`), migrationCount(t); versions != int64(want) {
		t.Errorf("goose_db_version has %d migrations applied, want %d", versions, want)
	}
}

// TestSearchPathInOptions: the schema may also be set through the server's
// options, as libpq users often do.
func TestSearchPathInOptions(t *testing.T) {
	schema, _ := newSchema(t)
	u := withParam(t, databaseURL(t), "options", "-c search_path="+schema)
	s := openURL(t, u)
	defer closeStore(t, s)
	if err := s.CreateThread(t.Context(), newThread("thr_opt")); err != nil {
		t.Fatal(err)
	}
	n := queryInt(t, databaseURL(t), `SELECT COUNT(*) FROM `+pgx.Identifier{schema, "threads"}.Sanitize()+` WHERE id = 'thr_opt'`)
	if n != 1 {
		t.Errorf("%d threads thr_opt in schema %s, want 1", n, schema)
	}
}

func TestOpenMissingSchema(t *testing.T) {
	u := withParam(t, databaseURL(t), "search_path", "agentstream_no_such_schema")
	start := time.Now()
	_, err := postgres.Open(t.Context(), u)
	if err == nil || !strings.Contains(err.Error(), "agentstream_no_such_schema") || !strings.Contains(err.Error(), "search_path") {
		t.Fatalf("Open with a search_path of no existing schema: %v; want an error naming search_path and the schema", err)
	}
	t.Logf("%v (after %v)", err, time.Since(start))
}

// TestOpenUnreachable: nothing listens on port 1: Open fails at once, with
// an error saying where it tried to connect. Needs no database.
func TestOpenUnreachable(t *testing.T) {
	t.Parallel()
	start := time.Now()
	_, err := postgres.Open(t.Context(), "postgres://postgres:secret@127.0.0.1:1/test?sslmode=disable")
	elapsed := time.Since(start)
	if err == nil {
		t.Fatal("Open of an unreachable database: no error")
	}
	t.Logf("%v (after %v)", err, elapsed)
	if !errors.Is(err, agentstream.ErrUnavailable) {
		t.Errorf("error is not ErrUnavailable")
	}
	if msg := err.Error(); !strings.Contains(msg, "127.0.0.1:1") || strings.Contains(msg, "secret") {
		t.Errorf("error %q: want the address, and no password", msg)
	}
	if elapsed > 5*time.Second {
		t.Errorf("Open took %v", elapsed)
	}
}

// silentServer accepts TCP connections and never answers, as a hung server
// or a black-holing firewall would. Connections are closed when t ends.
func silentServer(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return ln.Addr().String()
}

// TestOpenSilentServer: a server that never answers makes Open fail after
// the connect timeout, the URL's or the default, rather than hang. Needs
// no database.
func TestOpenSilentServer(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, query string
		min, max    time.Duration
	}{
		{"connect_timeout", "?sslmode=disable&connect_timeout=1", 900 * time.Millisecond, 4 * time.Second},
		// sslmode=prefer tries TLS, then plain text, within one timeout.
		{"default", "", postgres.DefaultConnectTimeout - 100*time.Millisecond, postgres.DefaultConnectTimeout + 3*time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			addr := silentServer(t)
			start := time.Now()
			_, err := postgres.Open(t.Context(), "postgres://postgres@"+addr+"/test"+tc.query)
			elapsed := time.Since(start)
			if err == nil {
				t.Fatal("Open of a silent server: no error")
			}
			t.Logf("%v (after %v)", err, elapsed)
			if elapsed < tc.min || elapsed > tc.max {
				t.Errorf("Open failed after %v, want between %v and %v", elapsed, tc.min, tc.max)
			}
			if !errors.Is(err, agentstream.ErrUnavailable) || !strings.Contains(err.Error(), addr) {
				t.Errorf("want an ErrUnavailable naming %s", addr)
			}
		})
	}
}

// TestOpenCancelled: Open gives up when its context ends. Needs no
// database.
func TestOpenCancelled(t *testing.T) {
	t.Parallel()
	addr := silentServer(t)
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := postgres.Open(ctx, "postgres://postgres@"+addr+"/test?sslmode=disable")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Open with a context that ends: %v, want context.DeadlineExceeded", err)
	}
	if elapsed := time.Since(start); elapsed > 3*time.Second {
		t.Errorf("Open took %v", elapsed)
	}
}

func TestOpenBadURL(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"", "postgres://%zz", "postgres://h/db?connect_timeout=soon"} {
		if _, err := postgres.Open(t.Context(), u); err == nil {
			t.Errorf("Open(%q): no error", u)
		} else {
			t.Logf("Open(%q): %v", u, err)
		}
	}
}

// TestClosed: a closed store fails every call with ErrUnavailable, and
// does not panic; Close may be called again.
func TestClosed(t *testing.T) {
	s := openFresh(t)
	ctx := t.Context()
	th := newThread("thr_1")
	if err := s.CreateThread(ctx, th); err != nil {
		t.Fatal(err)
	}
	closeStore(t, s)
	closeStore(t, s)

	run := agentstream.Run{ID: "run_1", ThreadID: th.ID, UserID: "u", Status: agentstream.RunQueued}
	msg := agentstream.Message{ID: "msg_1", Role: agentstream.RoleUser, Status: agentstream.MessageComplete}
	done := run
	done.Status = agentstream.RunCompleted
	calls := map[string]func() error{
		"CreateThread": func() error { return s.CreateThread(ctx, newThread("thr_2")) },
		"GetThread":    func() error { _, err := s.GetThread(ctx, "u", th.ID); return err },
		"ListMessages": func() error { _, err := s.ListMessages(ctx, th.ID); return err },
		"CreateRun":    func() error { _, err := s.CreateRun(ctx, run, msg); return err },
		"StartRun":     func() error { return s.StartRun(ctx, run.ID, time.Now()) },
		"CheckpointRun": func() error {
			return s.CheckpointRun(ctx, run.ID, []agentstream.Message{msg})
		},
		"FinishRun":     func() error { return s.FinishRun(ctx, done, nil) },
		"InterruptRuns": func() error { _, err := s.InterruptRuns(ctx, time.Now(), agentstream.ErrorInfo{}); return err },
		"GetRun":        func() error { _, err := s.GetRun(ctx, "u", run.ID); return err },
		"Ping":          func() error { return s.Ping(ctx) },
		"CreateRunLimited": func() error {
			_, err := s.CreateRunLimited(ctx, run, agentstream.RunLimits{Active: 1}, msg)
			return err
		},
		"AddUsage": func() error { return s.AddUsage(ctx, "u", time.Now(), 1) },
		"Usage":    func() error { _, err := s.Usage(ctx, "u", time.Now()); return err },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, agentstream.ErrUnavailable) {
			t.Errorf("%s after Close: %v, want ErrUnavailable", name, err)
		}
	}
}

// TestCloseWhileInUse: closing a store while calls are under way makes
// them fail or finish, never panic.
func TestCloseWhileInUse(t *testing.T) {
	s := openFresh(t)
	ctx := t.Context()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := 0; ; j++ {
				th := newThread(agentstream.NewID("thr_"))
				err := s.CreateThread(ctx, th)
				if err == nil {
					_, err = s.GetThread(ctx, "u", th.ID)
				}
				if err != nil {
					if !errors.Is(err, agentstream.ErrUnavailable) {
						t.Errorf("goroutine %d, call %d: %v, want ErrUnavailable", i, j, err)
					}
					return
				}
			}
		})
	}
	time.Sleep(100 * time.Millisecond)
	closeStore(t, s)
	wg.Wait()
}

// TestConnectionsKilled: when the server drops the store's connections
// (a restart, a failover), calls fail with ErrUnavailable, if at all, and
// the store recovers by itself.
func TestConnectionsKilled(t *testing.T) {
	_, u := newSchema(t)
	app := "agentstream_test_" + strings.ToLower(agentstream.NewID(""))
	s := openURL(t, withParam(t, u, "application_name", app))
	defer closeStore(t, s)
	ctx := t.Context()
	if err := s.CreateThread(ctx, newThread("thr_1")); err != nil {
		t.Fatal(err)
	}
	killed := queryInt(t, u, `SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1`, app)
	if killed == 0 {
		t.Fatal("no connection of the store found to terminate")
	}
	var failures int
	for {
		_, err := s.GetThread(ctx, "u", "thr_1")
		if err == nil {
			break
		}
		if !errors.Is(err, agentstream.ErrUnavailable) {
			t.Fatalf("GetThread after the connections were killed: %v, want ErrUnavailable", err)
		}
		t.Logf("GetThread: %v", err)
		if failures++; failures > 10 {
			t.Fatal("the store does not recover")
		}
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

func TestTimesAreUTC(t *testing.T) {
	// A session time zone other than UTC must not show through.
	_, u := newSchema(t)
	s := openURL(t, withParam(t, u, "timezone", "Asia/Kolkata"))
	defer closeStore(t, s)
	storetest.CheckTimes(t, s)
}

func TestCancelledContext(t *testing.T) {
	s := openFresh(t)
	defer closeStore(t, s)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	th := newThread("thr_1")
	if err := s.CreateThread(ctx, th); !errors.Is(err, context.Canceled) {
		t.Errorf("CreateThread with a cancelled context: %v, want context.Canceled", err)
	}
	if _, err := s.GetThread(ctx, "u", "thr_1"); !errors.Is(err, context.Canceled) {
		t.Errorf("GetThread with a cancelled context: %v, want context.Canceled", err)
	}
	if _, err := s.GetThread(t.Context(), "u", "thr_1"); !errors.Is(err, agentstream.ErrNotFound) {
		t.Errorf("GetThread: %v, want ErrNotFound (nothing written)", err)
	}
}

// TestDeadline: a call that outlives its context's deadline is cut short
// with an error that says so.
func TestDeadline(t *testing.T) {
	_, u := newSchema(t)
	s := openURL(t, u)
	defer closeStore(t, s)
	th, _ := storetest.Seed(t, s, agentstream.RunRunning)
	// Hold the thread's lock from another connection: CreateRun waits.
	conn, err := pgx.Connect(t.Context(), u)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	tx, err := conn.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	if _, err := tx.Exec(t.Context(), `SELECT 1 FROM threads WHERE id = $1 FOR UPDATE`, th.ID); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	run := agentstream.Run{ID: agentstream.NewID("run_"), ThreadID: th.ID, UserID: "u", Status: agentstream.RunQueued}
	in := agentstream.Message{ID: agentstream.NewID("msg_"), Role: agentstream.RoleUser, Status: agentstream.MessageComplete}
	start := time.Now()
	_, err = s.CreateRun(ctx, run, in)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("CreateRun past its deadline: %v, want context.DeadlineExceeded", err)
	}
	if elapsed := time.Since(start); elapsed > 3*time.Second {
		t.Errorf("CreateRun returned after %v", elapsed)
	}
	// The store is still usable.
	if err := s.Ping(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// TestUnstorableText: PostgreSQL refuses NUL characters in text and jsonb;
// the store says so with ErrInvalid and writes nothing.
func TestUnstorableText(t *testing.T) {
	s := openFresh(t)
	defer closeStore(t, s)
	ctx := t.Context()
	bad := newThread("thr_nul")
	bad.Title = "a\x00b"
	if err := s.CreateThread(ctx, bad); !errors.Is(err, agentstream.ErrInvalid) {
		t.Errorf("CreateThread with a NUL in the title: %v, want ErrInvalid", err)
	}
	bad = newThread("thr_nul")
	bad.Metadata = map[string]any{"k": "a\x00b"}
	if err := s.CreateThread(ctx, bad); !errors.Is(err, agentstream.ErrInvalid) {
		t.Errorf("CreateThread with a NUL in metadata: %v, want ErrInvalid", err)
	}
	if _, err := s.GetThread(ctx, "u", "thr_nul"); !errors.Is(err, agentstream.ErrNotFound) {
		t.Errorf("GetThread: %v, want ErrNotFound (nothing written)", err)
	}

	th, run := storetest.Seed(t, s, agentstream.RunRunning)
	msg := agentstream.Message{ID: agentstream.NewID("msg_"), Role: agentstream.RoleAssistant, Content: "bad \x00 content", Status: agentstream.MessagePartial}
	if err := s.CheckpointRun(ctx, run.ID, []agentstream.Message{msg}); !errors.Is(err, agentstream.ErrInvalid) {
		t.Errorf("CheckpointRun with a NUL in content: %v, want ErrInvalid", err)
	}
	msgs, err := s.ListMessages(ctx, th.ID)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("ListMessages: %d messages, %v; want only the input", len(msgs), err)
	}
	msg.Content = "fine"
	if err := s.CheckpointRun(ctx, run.ID, []agentstream.Message{msg}); err != nil {
		t.Errorf("CheckpointRun after the refused one: %v", err)
	}
}

func BenchmarkRunWrites(b *testing.B) {
	storetest.BenchmarkRunWrites(b, func(t testing.TB) agentstream.Store { return openFresh(t) })
}

func BenchmarkListMessages(b *testing.B) {
	storetest.BenchmarkListMessages(b, func(t testing.TB) agentstream.Store { return openFresh(t) })
}

// TestCheckpointTextFolds: the parts CheckpointText appends are gone after
// each kind of whole save.
func TestCheckpointTextFolds(t *testing.T) {
	databaseURL(t)
	_, u := newSchema(t)
	s := openURL(t, u)
	defer closeStore(t, s)
	storetest.CheckpointTextFolds(t, s, func(t testing.TB) int {
		t.Helper()
		return int(queryInt(t, u, `SELECT count(*) FROM message_parts`))
	})
}

// BenchmarkCheckpoints: see storetest.BenchmarkCheckpoints. Bytes written
// are the WAL the server wrote meanwhile (pg_current_wal_lsn), which
// counts every session's writes: figures are exact only on a server
// nothing else writes to. CPU is the client's alone.
func BenchmarkCheckpoints(b *testing.B) {
	databaseURL(b)
	_, u := newSchema(b)
	conn, err := pgx.Connect(b.Context(), u)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = conn.Close(context.Background()) })
	written := func(t testing.TB) int64 {
		t.Helper()
		var n int64
		if err := conn.QueryRow(context.Background(), `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint`).Scan(&n); err != nil {
			t.Fatalf("reading the WAL position: %v", err)
		}
		return n
	}
	storetest.BenchmarkCheckpoints(b, func(t testing.TB) agentstream.Store { return openFresh(t) }, written)
}
