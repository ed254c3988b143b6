package sqlite

import (
	"io/fs"
	"path/filepath"
	"testing"
	"time"

	"github.com/pressly/goose/v3"

	"github.com/agentstream/agentstream"
)

// TestKeysBesideTheOwner: a store opened without Exclusive (agentstream
// keys) on a file an Exclusive store owns (serve), whose schema predates
// the keys table, migrates it and stores a key the owner then finds.
func TestKeysBesideTheOwner(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "agentstream.db")
	owner, err := OpenWith(t.Context(), path, Options{Exclusive: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = owner.Close() })
	// The schema of a server that knows no keys: migrated down to 4.
	fsys, err := fs.Sub(migrations, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, owner.w, fsys, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.DownTo(t.Context(), 4); err != nil {
		t.Fatal(err)
	}
	if _, err := owner.HasKeys(t.Context()); err == nil {
		t.Fatal("the keys table is still there after migrating down to 4")
	}

	keys, err := Open(t.Context(), path) // no lock: the owner holds it
	if err != nil {
		t.Fatalf("opening beside the owner: %v", err)
	}
	t.Cleanup(func() { _ = keys.Close() })
	secret, k := agentstream.NewAPIKey("ada", "", time.Now())
	if err := keys.CreateKey(t.Context(), k); err != nil {
		t.Fatalf("CreateKey beside the owner: %v", err)
	}
	got, err := owner.KeyByHash(t.Context(), agentstream.HashAPIKey(secret))
	if err != nil || got.ID != k.ID {
		t.Fatalf("the owner's lookup of the new key: %+v, %v", got, err)
	}
}
