package storetest

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
)

// keys returns a fresh store as an agentstream.KeyStore: every store the
// suite runs on keeps API keys too.
func (s suite) keys(t testing.TB) agentstream.KeyStore {
	t.Helper()
	st := s.open(t)
	ks, ok := st.(agentstream.KeyStore)
	if !ok {
		t.Fatalf("%T does not implement agentstream.KeyStore", st)
	}
	return ks
}

func createKey(t testing.TB, ks agentstream.KeyStore, user, name string, created time.Time) (string, agentstream.APIKey) {
	t.Helper()
	secret, k := agentstream.NewAPIKey(user, name, created)
	if err := ks.CreateKey(t.Context(), k); err != nil {
		t.Fatalf("CreateKey: %v", err)
	}
	return secret, k
}

// testKeysRoundTrip: a created key is found by its hash and listed, with
// every field as given, and no field holds the secret.
func (s suite) testKeysRoundTrip(t *testing.T) {
	ks := s.keys(t)
	ctx := t.Context()
	if has, err := ks.HasKeys(ctx); err != nil || has {
		t.Fatalf("HasKeys of an empty store = %v, %v; want false", has, err)
	}
	secret, k := createKey(t, ks, "alice", "laptop", at(1))
	got, err := ks.KeyByHash(ctx, agentstream.HashAPIKey(secret))
	if err != nil {
		t.Fatalf("KeyByHash: %v", err)
	}
	if !keyEqual(got, k) {
		t.Fatalf("KeyByHash = %+v, want %+v", got, k)
	}
	list, err := ks.ListKeys(ctx, "alice")
	if err != nil || len(list) != 1 || !keyEqual(list[0], k) {
		t.Fatalf("ListKeys(alice) = %+v, %v; want [%+v]", list, err, k)
	}
	for _, f := range []string{got.ID, got.UserID, got.Name, got.Hash, got.Hint} {
		if strings.Contains(f, secret[len(agentstream.APIKeyPrefix):]) {
			t.Fatalf("a stored field holds the secret: %q", f)
		}
	}
	if has, err := ks.HasKeys(ctx); err != nil || !has {
		t.Fatalf("HasKeys after CreateKey = %v, %v; want true", has, err)
	}
	if _, err := ks.KeyByHash(ctx, agentstream.HashAPIKey(secret+"x")); !errors.Is(err, agentstream.ErrNotFound) {
		t.Fatalf("KeyByHash of another secret: %v, want ErrNotFound", err)
	}
	if _, err := ks.KeyByHash(ctx, "nul\x00"); !errors.Is(err, agentstream.ErrNotFound) {
		t.Fatalf("KeyByHash of a hash no store holds: %v, want ErrNotFound", err)
	}
}

// testKeysList: by user or all, oldest first, revoked ones included.
func (s suite) testKeysList(t *testing.T) {
	ks := s.keys(t)
	ctx := t.Context()
	if list, err := ks.ListKeys(ctx, ""); err != nil || len(list) != 0 {
		t.Fatalf("ListKeys of an empty store = %+v, %v", list, err)
	}
	_, b := createKey(t, ks, "bob", "", at(2))
	_, a1 := createKey(t, ks, "alice", "one", at(1))
	_, a2 := createKey(t, ks, "alice", "two", at(3))
	if _, err := ks.RevokeKey(ctx, a1.ID, at(4)); err != nil {
		t.Fatal(err)
	}
	all, err := ks.ListKeys(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if ids := keyIDs(all); !slices.Equal(ids, []string{a1.ID, b.ID, a2.ID}) {
		t.Fatalf("ListKeys(\"\") = %v, want %v", ids, []string{a1.ID, b.ID, a2.ID})
	}
	if all[0].RevokedAt == nil || !all[0].RevokedAt.Equal(us(at(4))) {
		t.Fatalf("a revoked key lists with RevokedAt %v, want %v", all[0].RevokedAt, at(4))
	}
	alice, err := ks.ListKeys(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if ids := keyIDs(alice); !slices.Equal(ids, []string{a1.ID, a2.ID}) {
		t.Fatalf("ListKeys(alice) = %v, want %v", ids, []string{a1.ID, a2.ID})
	}
	if list, err := ks.ListKeys(ctx, "nobody"); err != nil || len(list) != 0 {
		t.Fatalf("ListKeys(nobody) = %+v, %v", list, err)
	}
	if list, err := ks.ListKeys(ctx, "bad\xff"); err != nil || len(list) != 0 {
		t.Fatalf("ListKeys of a user no store holds = %+v, %v", list, err)
	}
}

// testKeysRevoke: a revoked key is no longer found by its hash; revoking
// again keeps the first time; an unknown ID is ErrNotFound; HasKeys stays
// true.
func (s suite) testKeysRevoke(t *testing.T) {
	ks := s.keys(t)
	ctx := t.Context()
	secret, k := createKey(t, ks, "alice", "", at(1))
	other, _ := createKey(t, ks, "alice", "", at(2))
	got, err := ks.RevokeKey(ctx, k.ID, at(5))
	if err != nil {
		t.Fatalf("RevokeKey: %v", err)
	}
	if got.ID != k.ID || got.RevokedAt == nil || !got.RevokedAt.Equal(us(at(5))) {
		t.Fatalf("RevokeKey = %+v, want revoked at %v", got, at(5))
	}
	if _, err := ks.KeyByHash(ctx, agentstream.HashAPIKey(secret)); !errors.Is(err, agentstream.ErrNotFound) {
		t.Fatalf("KeyByHash of a revoked key: %v, want ErrNotFound", err)
	}
	if _, err := ks.KeyByHash(ctx, agentstream.HashAPIKey(other)); err != nil {
		t.Fatalf("another key of the user after a revocation: %v", err)
	}
	again, err := ks.RevokeKey(ctx, k.ID, at(9))
	if err != nil || again.RevokedAt == nil || !again.RevokedAt.Equal(us(at(5))) {
		t.Fatalf("RevokeKey again = %+v, %v; want the first RevokedAt %v", again, err, at(5))
	}
	for _, id := range []string{"key_unknown", "", "bad\x00"} {
		if _, err := ks.RevokeKey(ctx, id, at(6)); !errors.Is(err, agentstream.ErrNotFound) {
			t.Fatalf("RevokeKey(%q): %v, want ErrNotFound", id, err)
		}
	}
	if _, err := ks.RevokeKey(ctx, k.ID, at(6)); err != nil {
		t.Fatal(err)
	}
	if has, err := ks.HasKeys(ctx); err != nil || !has {
		t.Fatalf("HasKeys with only revoked keys = %v, %v; want true", has, err)
	}
}

// testKeysRefused: ErrInvalid for a record Check refuses, ErrConflict
// for a taken ID or hash; nothing written either way.
func (s suite) testKeysRefused(t *testing.T) {
	ks := s.keys(t)
	ctx := t.Context()
	_, k := createKey(t, ks, "alice", "", at(1))
	sameID := k
	_, fresh := agentstream.NewAPIKey("bob", "", at(2))
	sameID.Hash = fresh.Hash
	if err := ks.CreateKey(ctx, sameID); !errors.Is(err, agentstream.ErrConflict) {
		t.Fatalf("CreateKey with a taken ID: %v, want ErrConflict", err)
	}
	sameHash := fresh
	sameHash.Hash = k.Hash
	if err := ks.CreateKey(ctx, sameHash); !errors.Is(err, agentstream.ErrConflict) {
		t.Fatalf("CreateKey with a taken hash: %v, want ErrConflict", err)
	}
	for name, mutate := range map[string]func(*agentstream.APIKey){
		"no user":       func(k *agentstream.APIKey) { k.UserID = "" },
		"control user":  func(k *agentstream.APIKey) { k.UserID = "a\nb" },
		"no id":         func(k *agentstream.APIKey) { k.ID = "" },
		"long name":     func(k *agentstream.APIKey) { k.Name = strings.Repeat("n", agentstream.MaxKeyNameBytes+1) },
		"NUL name":      func(k *agentstream.APIKey) { k.Name = "a\x00" },
		"short hash":    func(k *agentstream.APIKey) { k.Hash = "abc" },
		"uppercase hex": func(k *agentstream.APIKey) { k.Hash = strings.ToUpper(k.Hash) },
	} {
		_, bad := agentstream.NewAPIKey("carol", "", at(3))
		mutate(&bad)
		if err := ks.CreateKey(ctx, bad); !errors.Is(err, agentstream.ErrInvalid) {
			t.Errorf("CreateKey (%s): %v, want ErrInvalid", name, err)
		}
	}
	list, err := ks.ListKeys(ctx, "")
	if err != nil || len(list) != 1 {
		t.Fatalf("after refused creates ListKeys = %+v, %v; want only the first key", list, err)
	}
}

// testKeysConcurrentRevoke: revocations at once all succeed and agree on
// one RevokedAt.
func (s suite) testKeysConcurrentRevoke(t *testing.T) {
	ks := s.keys(t)
	_, k := createKey(t, ks, "alice", "", at(1))
	var wg sync.WaitGroup
	got := make([]agentstream.APIKey, 8)
	errs := make([]error, len(got))
	for i := range got {
		wg.Go(func() { got[i], errs[i] = ks.RevokeKey(t.Context(), k.ID, at(10+i)) })
	}
	wg.Wait()
	for i := range got {
		if errs[i] != nil {
			t.Fatalf("RevokeKey %d: %v", i, errs[i])
		}
		if got[i].RevokedAt == nil || !got[i].RevokedAt.Equal(*got[0].RevokedAt) {
			t.Fatalf("revocations disagree: %v and %v", got[i].RevokedAt, got[0].RevokedAt)
		}
	}
}

// us is t as stores keep it: to the microsecond.
func us(t time.Time) time.Time { return t.Truncate(time.Microsecond) }

func keyIDs(keys []agentstream.APIKey) []string {
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = k.ID
	}
	return ids
}

func keyEqual(a, b agentstream.APIKey) bool {
	sameRevoked := (a.RevokedAt == nil) == (b.RevokedAt == nil) && (a.RevokedAt == nil || a.RevokedAt.Equal(*b.RevokedAt))
	return a.ID == b.ID && a.UserID == b.UserID && a.Name == b.Name && a.Hash == b.Hash && a.Hint == b.Hint &&
		a.CreatedAt.Equal(b.CreatedAt) && sameRevoked
}
