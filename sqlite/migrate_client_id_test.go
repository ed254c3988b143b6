package sqlite

import (
	"database/sql"
	"io/fs"
	"path/filepath"
	"testing"
	"time"

	"github.com/pressly/goose/v3"

	"github.com/agentstream/agentstream"
)

// TestMigrateKeepsThreads: a database made before threads had a client id
// opens with its threads as they were (their id, the key as given, and
// no client id), and takes runs on them.
func TestMigrateKeepsThreads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "old.db")
	db, err := sql.Open("sqlite", dsn(path, true))
	if err != nil {
		t.Fatal(err)
	}
	fsys, err := fs.Sub(migrations, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, db, fsys, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.UpTo(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	created := time.Date(2025, 1, 2, 3, 4, 5, 6000, time.UTC)
	if _, err := db.Exec(`INSERT INTO threads (id, user_id, agent, title, metadata, context, created_at, updated_at)
		VALUES ('hana-1', 'alice', 'assistant', 'Old', '{"k":"v"}', NULL, ?, ?)`, created.UnixMicro(), created.UnixMicro()); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	th, err := s.GetThread(t.Context(), "alice", "hana-1")
	if err != nil {
		t.Fatal(err)
	}
	if th.ID != "hana-1" || th.ClientID != "" || th.PublicID() != "hana-1" || th.Title != "Old" || th.Metadata["k"] != "v" || !th.CreatedAt.Equal(created) {
		t.Fatalf("the old thread reads back as %+v", th)
	}
	run := agentstream.Run{ID: agentstream.NewID("run_"), ThreadID: th.ID, UserID: "alice", Agent: "assistant", Status: agentstream.RunQueued, CreatedAt: created}
	in := agentstream.Message{ID: agentstream.NewID("msg_"), Role: agentstream.RoleUser, Content: "hi", Status: agentstream.MessageComplete, CreatedAt: created}
	if _, err := s.CreateRun(t.Context(), run, in); err != nil {
		t.Fatalf("a run on the old thread: %v", err)
	}
}
