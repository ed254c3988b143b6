package sqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/sqlite"
	"github.com/agentstream/agentstream/storetest"
)

func openAt(t testing.TB, path string) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func openTemp(t testing.TB) *sqlite.Store {
	t.Helper()
	return openAt(t, filepath.Join(t.TempDir(), "agentstream.db"))
}

func TestStore(t *testing.T) {
	storetest.Run(t, func(t testing.TB) agentstream.Store { return openTemp(t) })
}

func TestMemoryStore(t *testing.T) {
	storetest.Run(t, func(t testing.TB) agentstream.Store { return openAt(t, ":memory:") })
}

func closeStore(t testing.TB, s *sqlite.Store) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func TestReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agentstream.db")
	s := openAt(t, path)
	th := agentstream.Thread{ID: "thr_1", UserID: "u", Agent: "a", Title: "t", CreatedAt: time.Now(), UpdatedAt: time.Now()}
	if err := s.CreateThread(t.Context(), th); err != nil {
		t.Fatal(err)
	}
	closeStore(t, s)
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}

	// The migrations are applied already: opening again is fine and keeps
	// the data.
	for range 2 {
		s = openAt(t, path)
		if _, err := s.GetThread(t.Context(), "u", "thr_1"); err != nil {
			t.Fatalf("GetThread after reopening: %v", err)
		}
		closeStore(t, s)
	}

	db := rawDB(t, path)
	var versions int
	if err := db.QueryRow(`SELECT COUNT(*) FROM goose_db_version WHERE version_id > 0`).Scan(&versions); err != nil {
		t.Fatal(err)
	}
	if want := migrationCount(t); versions != want {
		t.Errorf("goose_db_version has %d migrations applied, want %d", versions, want)
	}
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

// rawDB opens path directly, bypassing the store.
func rawDB(t testing.TB, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Error(err)
		}
	})
	return db
}

func TestWAL(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agentstream.db")
	s := openAt(t, path)
	defer closeStore(t, s)
	var mode string
	if err := rawDB(t, path).QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil {
		t.Fatal(err)
	}
	if mode != "wal" {
		t.Errorf("journal_mode = %q, want wal", mode)
	}
}

func TestOpenMissingDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "no", "such", "dir", "agentstream.db")
	_, err := sqlite.Open(t.Context(), path)
	if err == nil {
		t.Fatal("Open in a missing directory: no error")
	}
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), path) {
		t.Errorf("Open in a missing directory: %v; want an fs.ErrNotExist naming %s", err, path)
	}
	t.Log(err)
}

func TestOpenNotADatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "junk.db")
	if err := os.WriteFile(path, []byte(strings.Repeat("not a database\n", 100)), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := sqlite.Open(t.Context(), path)
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("Open of a junk file: %v; want an error naming %s", err, path)
	}
	t.Log(err)
}

func TestOpenOddPath(t *testing.T) {
	name := "odd ?name#with%20chars&x=1.db"
	path := filepath.Join(t.TempDir(), name)
	s := openAt(t, path)
	if err := s.Ping(t.Context()); err != nil {
		t.Fatal(err)
	}
	closeStore(t, s)
	if _, err := os.Stat(path); err != nil {
		t.Errorf("database file not at the path given: %v", err)
	}
}

func TestValidation(t *testing.T) {
	s := openTemp(t)
	defer closeStore(t, s)

	th, run := storetest.Seed(t, s, agentstream.RunQueued)
	msg := agentstream.Message{ID: agentstream.NewID("msg_"), Role: agentstream.RoleAssistant, Status: agentstream.MessageComplete}
	err := s.CheckpointRun(t.Context(), run.ID, []agentstream.Message{msg})
	if !errors.Is(err, agentstream.ErrConflict) {
		t.Errorf("CheckpointRun of a queued run: %v, want ErrConflict", err)
	}
	run.Status = agentstream.RunRunning
	if err := s.FinishRun(t.Context(), run, nil); !errors.Is(err, agentstream.ErrInvalid) {
		t.Errorf("FinishRun with a non-terminal status: %v, want ErrInvalid", err)
	}

	run2 := agentstream.Run{ID: agentstream.NewID("run_"), ThreadID: th.ID, UserID: "u", Status: agentstream.RunCompleted}
	if _, err := s.CreateRun(t.Context(), run2, msg); !errors.Is(err, agentstream.ErrInvalid) {
		t.Errorf("CreateRun of a completed run: %v, want ErrInvalid", err)
	}
	bad := agentstream.Thread{ID: agentstream.NewID("thr_"), UserID: "u", Metadata: map[string]any{"f": func() {}}}
	if err := s.CreateThread(t.Context(), bad); !errors.Is(err, agentstream.ErrInvalid) {
		t.Errorf("CreateThread with unencodable metadata: %v, want ErrInvalid", err)
	}
}

func TestCancelledContext(t *testing.T) {
	s := openTemp(t)
	defer closeStore(t, s)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	th := agentstream.Thread{ID: "thr_1", UserID: "u"}
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

func BenchmarkRunWrites(b *testing.B) {
	storetest.BenchmarkRunWrites(b, func(t testing.TB) agentstream.Store { return openTemp(t) })
}

func BenchmarkListMessages(b *testing.B) {
	storetest.BenchmarkListMessages(b, func(t testing.TB) agentstream.Store { return openTemp(t) })
}

// TestCheckpointTextFolds: the parts CheckpointText appends are gone after
// each kind of whole save.
func TestCheckpointTextFolds(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agentstream.db")
	s := openAt(t, path)
	defer closeStore(t, s)
	db := rawDB(t, path)
	storetest.CheckpointTextFolds(t, s, func(t testing.TB) int {
		t.Helper()
		var n int
		if err := db.QueryRow(`SELECT count(*) FROM message_parts`).Scan(&n); err != nil {
			t.Fatalf("counting parts: %v", err)
		}
		return n
	})
}

// BenchmarkCheckpoints: see storetest.BenchmarkCheckpoints. Bytes written
// are the process's (wchar of /proc/self/io: every write(2) SQLite makes,
// to the database and its WAL); not reported where that file is missing.
func BenchmarkCheckpoints(b *testing.B) {
	written := func(t testing.TB) int64 {
		t.Helper()
		n, err := wchar()
		if err != nil {
			t.Fatalf("reading the bytes written: %v", err)
		}
		return n
	}
	if _, err := wchar(); err != nil {
		b.Logf("bytes written are not reported: %v", err)
		written = nil
	}
	storetest.BenchmarkCheckpoints(b, func(t testing.TB) agentstream.Store { return openTemp(t) }, written)
}

// wchar is the bytes the process has passed to write(2) and its kin.
func wchar() (int64, error) {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "wchar: "); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, errors.New("no wchar in /proc/self/io")
}
