package httpapi

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/sqlite"
)

// countingKeys is a real store's KeyStore that counts the lookups and
// fails them while down is set.
type countingKeys struct {
	agentstream.KeyStore
	lookups, hasKeys atomic.Int64
	mu               sync.Mutex
	down             error
}

func (c *countingKeys) fail() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.down
}

func (c *countingKeys) setDown(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.down = err
}

func (c *countingKeys) KeyByHash(ctx context.Context, hash string) (agentstream.APIKey, error) {
	c.lookups.Add(1)
	if err := c.fail(); err != nil {
		return agentstream.APIKey{}, err
	}
	return c.KeyStore.KeyByHash(ctx, hash)
}

func (c *countingKeys) HasKeys(ctx context.Context) (bool, error) {
	c.hasKeys.Add(1)
	if err := c.fail(); err != nil {
		return false, err
	}
	return c.KeyStore.HasKeys(ctx)
}

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// withStore returns a over a fresh SQLite store, its clock and the store.
func withStore(t testing.TB, a *Identities) (*Identities, *fakeClock, *countingKeys) {
	t.Helper()
	st, err := sqlite.Open(t.Context(), ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	ks := &countingKeys{KeyStore: st}
	clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	a.WithKeyStore(ks)
	a.stored.now = clock.Now
	return a, clock, ks
}

func authenticate(a *Identities, bearer, user string) (Identity, error) {
	r := httptest.NewRequest("GET", "/v1/threads", nil)
	if bearer != "" {
		r.Header.Set("Authorization", "Bearer "+bearer)
	}
	if user != "" {
		r.Header.Set(UserHeader, user)
	}
	return a.Authenticate(r)
}

func wantCode(t testing.TB, err error, code agentstream.Code, msg string) {
	t.Helper()
	if agentstream.CodeOf(err) != code || !strings.Contains(err.Error(), msg) {
		t.Fatalf("error %v, want %s saying %q", err, code, msg)
	}
}

func newStoredKey(t testing.TB, ks agentstream.KeyStore, user string) (string, agentstream.APIKey) {
	t.Helper()
	secret, k := agentstream.NewAPIKey(user, "", time.Now())
	if err := ks.CreateKey(t.Context(), k); err != nil {
		t.Fatal(err)
	}
	return secret, k
}

// TestStoredKeyRevocationBound: a stored key works as soon as it is
// created (unknown keys are not cached), and a revoked one keeps working
// for at most StoredKeyCacheTTL.
func TestStoredKeyRevocationBound(t *testing.T) {
	t.Parallel()
	a, clock, ks := withStore(t, NewIdentities(map[string]string{"config-key-0123456789": "carol"}, nil, fakeJWT{}, looksJWT))
	secret := agentstream.APIKeyPrefix + "not-yet-created"
	_, err := authenticate(a, secret, "")
	wantCode(t, err, agentstream.CodeUnauthorized, "not valid")

	secret, k := newStoredKey(t, ks, "dora")
	id, err := authenticate(a, secret, "") // at once, no clock moved
	if err != nil || id != (Identity{UserID: "dora", Via: ViaAPIKey}) {
		t.Fatalf("a new stored key: %+v, %v", id, err)
	}
	if _, err := authenticate(a, secret, "ada"); err == nil {
		t.Fatal("a stored key with X-Agentstream-User was accepted")
	}
	if _, err := ks.RevokeKey(t.Context(), k.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	clock.Add(StoredKeyCacheTTL - time.Millisecond)
	if _, err := authenticate(a, secret, ""); err != nil {
		t.Fatalf("within the cache bound a revoked key is still cached: %v", err)
	}
	clock.Add(time.Millisecond)
	_, err = authenticate(a, secret, "")
	wantCode(t, err, agentstream.CodeUnauthorized, "not valid")
	// The config key and JWTs never ask the store.
	before := ks.lookups.Load()
	for _, cred := range []string{"config-key-0123456789", "jwt.ok.sig", "something-else"} {
		_, _ = authenticate(a, cred, "")
	}
	if n := ks.lookups.Load() - before; n != 0 {
		t.Fatalf("credentials without the %s prefix cost %d store lookups", agentstream.APIKeyPrefix, n)
	}
}

// TestStoredKeyStoreDown: a lookup the store cannot answer is 503, never
// 401; a cached key is still served; the store back, all works again.
func TestStoredKeyStoreDown(t *testing.T) {
	t.Parallel()
	a, clock, ks := withStore(t, NewIdentities(nil, nil, nil, looksJWT))
	cached, _ := newStoredKey(t, ks, "dora")
	other, _ := newStoredKey(t, ks, "erin")
	if _, err := authenticate(a, cached, ""); err != nil {
		t.Fatal(err)
	}
	for _, down := range []error{
		agentstream.Wrap(agentstream.CodeUnavailable, errors.New("connection refused"), "postgres is unavailable"),
		errors.New("sqlite: disk I/O error"),
	} {
		ks.setDown(down)
		_, err := authenticate(a, other, "")
		wantCode(t, err, agentstream.CodeUnavailable, "could not be checked")
		if strings.Contains(agentstream.AsError(err).Message, "refused") || strings.Contains(agentstream.AsError(err).Message, "disk") {
			t.Fatalf("the client-safe message shows the cause: %q", agentstream.AsError(err).Message)
		}
	}
	if id, err := authenticate(a, cached, ""); err != nil || id.UserID != "dora" {
		t.Fatalf("a key cached before the outage: %+v, %v", id, err)
	}
	ks.setDown(nil)
	clock.Add(StoredKeyCacheTTL)
	if id, err := authenticate(a, other, ""); err != nil || id.UserID != "erin" {
		t.Fatalf("after the outage: %+v, %v", id, err)
	}
}

// TestLocalModeEndsWithFirstStoredKey: with nothing configured, the local
// user is served until the store holds a key (noticed within
// StoredKeyCacheTTL), then credentials are required for good, even once
// every key is revoked. A store that cannot say is 503.
func TestLocalModeEndsWithFirstStoredKey(t *testing.T) {
	t.Parallel()
	a, clock, ks := withStore(t, NewIdentities(nil, nil, nil, looksJWT))
	if id, err := authenticate(a, "", ""); err != nil || id.Via != ViaLocal {
		t.Fatalf("an empty store: %+v, %v; want the local user", id, err)
	}
	if _, err := authenticate(a, "", ""); err != nil {
		t.Fatal(err)
	}
	if n := ks.hasKeys.Load(); n != 1 {
		t.Fatalf("HasKeys asked %d times within the cache bound, want 1", n)
	}
	secret, k := newStoredKey(t, ks, "dora")
	// Within the bound: no credential is still the local user, but the
	// new key is its user at once.
	if id, err := authenticate(a, "", ""); err != nil || id.Via != ViaLocal {
		t.Fatalf("within the cache bound: %+v, %v; want the local user", id, err)
	}
	if id, err := authenticate(a, secret, ""); err != nil || id != (Identity{UserID: "dora", Via: ViaAPIKey}) {
		t.Fatalf("a new key in local mode: %+v, %v", id, err)
	}
	_, err := authenticate(a, agentstream.APIKeyPrefix+"unknown", "")
	wantCode(t, err, agentstream.CodeUnauthorized, "not valid")
	// The key found, the store is known to hold keys: no more local user.
	_, err = authenticate(a, "", "")
	wantCode(t, err, agentstream.CodeUnauthorized, "missing credential")
	clock.Add(StoredKeyCacheTTL)
	_, err = authenticate(a, "", "")
	wantCode(t, err, agentstream.CodeUnauthorized, "missing credential")
	if id, err := authenticate(a, secret, ""); err != nil || id.UserID != "dora" {
		t.Fatalf("the stored key: %+v, %v", id, err)
	}
	if _, err := ks.RevokeKey(t.Context(), k.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	clock.Add(time.Hour)
	_, err = authenticate(a, "", "")
	wantCode(t, err, agentstream.CodeUnauthorized, "missing credential")
	_, err = authenticate(a, secret, "")
	wantCode(t, err, agentstream.CodeUnauthorized, "not valid")

	b, _, down := withStore(t, NewIdentities(nil, nil, nil, looksJWT))
	down.setDown(errors.New("no such table: api_keys"))
	_, err = authenticate(b, "", "")
	wantCode(t, err, agentstream.CodeUnavailable, "could not be checked")
}

// TestStoredKeyCacheBounded: the cache of valid keys does not grow past
// maxCachedKeys; expired entries make room.
func TestStoredKeyCacheBounded(t *testing.T) {
	t.Parallel()
	a, clock, ks := withStore(t, NewIdentities(nil, nil, nil, looksJWT))
	s := a.stored
	secret, _ := newStoredKey(t, ks, "dora")
	for i := range maxCachedKeys {
		s.users[string(rune(i))+"-filler"] = cachedUser{user: "x", until: clock.Now().Add(time.Hour)}
	}
	if _, err := authenticate(a, secret, ""); err != nil {
		t.Fatal(err)
	}
	if len(s.users) != maxCachedKeys {
		t.Fatalf("cache holds %d entries, want at most %d", len(s.users), maxCachedKeys)
	}
	clock.Add(2 * time.Hour)
	if _, err := authenticate(a, secret, ""); err != nil {
		t.Fatal(err)
	}
	if len(s.users) != 1 {
		t.Fatalf("after expiry the cache holds %d entries, want 1", len(s.users))
	}
}
