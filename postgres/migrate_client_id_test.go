package postgres

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/internal/testenv"
)

// TestMigrateKeepsThreads: a schema made before threads had a client id
// opens with its threads as they were (their id, the key as given, and
// no client id), and takes runs on them.
func TestMigrateKeepsThreads(t *testing.T) {
	schema, u := testenv.PostgresSchema(t)
	pool, err := pgxpool.New(t.Context(), u)
	if err != nil {
		t.Fatal(err)
	}
	p, err := newProvider(pool, schema)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.UpTo(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	_ = p.Close() // leaves pool open
	created := time.Date(2025, 1, 2, 3, 4, 5, 6000, time.UTC)
	if _, err := pool.Exec(t.Context(), `INSERT INTO threads (id, user_id, agent, title, metadata, context, created_at, updated_at)
		VALUES ('hana-1', 'alice', 'assistant', 'Old', '{"k":"v"}', NULL, $1, $1)`, created); err != nil {
		t.Fatal(err)
	}
	pool.Close()

	s, err := Open(t.Context(), u)
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
