package httpapi

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/agentstream/agentstream"
)

// StoredKeyCacheTTL bounds how long an instance trusts what its store
// said of API keys: a revoked key stops working within it on every
// instance, and a server with no identity configured notices the first
// key created within it. A new key works at once: unknown keys are
// never cached.
const StoredKeyCacheTTL = 2 * time.Second

// maxCachedKeys bounds the cache of valid stored keys; past it, expired
// entries are dropped.
const maxCachedKeys = 4096

// storedKeys answers, from a KeyStore with a short cache, which user a
// stored API key is, and whether the store holds any key at all.
type storedKeys struct {
	ks  agentstream.KeyStore
	ttl time.Duration
	now func() time.Time

	mu sync.Mutex
	// users caches valid keys: hash → user, until when.
	users map[string]cachedUser
	// any is true once the store held a key: it stays so (keys are never
	// deleted, only revoked). anyUntil is when a false answer is asked again.
	any      bool
	anyUntil time.Time
}

type cachedUser struct {
	user  string
	until time.Time
}

func newStoredKeys(ks agentstream.KeyStore, ttl time.Duration, now func() time.Time) *storedKeys {
	return &storedKeys{ks: ks, ttl: ttl, now: now, users: make(map[string]cachedUser)}
}

// user returns the user of the stored key secret: CodeUnauthorized when
// no active key has its hash, CodeUnavailable when the store cannot say.
func (s *storedKeys) user(ctx context.Context, secret string) (string, error) {
	hash := agentstream.HashAPIKey(secret)
	now := s.now()
	s.mu.Lock()
	c, ok := s.users[hash]
	s.mu.Unlock()
	if ok && now.Before(c.until) {
		return c.user, nil
	}
	k, err := s.ks.KeyByHash(ctx, hash)
	switch {
	case agentstream.CodeOf(err) == agentstream.CodeNotFound:
		s.mu.Lock()
		delete(s.users, hash)
		s.mu.Unlock()
		return "", errBadKey()
	case err != nil:
		return "", unavailable(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.users) >= maxCachedKeys {
		for h, c := range s.users {
			if !now.Before(c.until) {
				delete(s.users, h)
			}
		}
	}
	if len(s.users) < maxCachedKeys {
		s.users[hash] = cachedUser{user: k.UserID, until: now.Add(s.ttl)}
	}
	s.any = true
	return k.UserID, nil
}

// hasAny reports whether the store holds a key, revoked ones included:
// a true answer is kept for ever, a false one for ttl.
func (s *storedKeys) hasAny(ctx context.Context) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// The query runs under the lock: one question per ttl, however many
	// requests arrive meanwhile.
	if s.any || s.now().Before(s.anyUntil) {
		return s.any, nil
	}
	has, err := s.ks.HasKeys(ctx)
	if err != nil {
		return false, unavailable(err)
	}
	s.any, s.anyUntil = has, s.now().Add(s.ttl)
	return has, nil
}

// looksStored reports whether a bearer credential can be a stored key:
// only those are looked up, so that no other credential costs a query.
func looksStored(token string) bool { return strings.HasPrefix(token, agentstream.APIKeyPrefix) }

func errBadKey() error {
	return agentstream.Errorf(agentstream.CodeUnauthorized, "the API key is not valid")
}

// unavailable is a store failure while checking a credential: 503, so
// that a client retries rather than taking its key for revoked.
func unavailable(err error) error {
	if e := agentstream.AsError(err); e.Code == agentstream.CodeUnavailable {
		return agentstream.Wrap(agentstream.CodeUnavailable, err, "the credential could not be checked: the store is unavailable; retry")
	}
	return agentstream.Wrap(agentstream.CodeUnavailable, err, "the credential could not be checked: the store failed; retry")
}

// WithKeyStore makes a accept the API keys of ks (agentstream keys
// create) beside those it was made with, checked on every request with a
// cache of StoredKeyCacheTTL. With no identity configured, a serves the
// local user only as long as ks holds no key, revoked ones included: once
// one exists, every request needs a credential, for good.
func (a *Identities) WithKeyStore(ks agentstream.KeyStore) *Identities {
	a.stored = newStoredKeys(ks, StoredKeyCacheTTL, time.Now)
	return a
}

// local reports whether a serves the local user: nothing configured, and
// no key in its store.
func (a *Identities) local(ctx context.Context) (bool, error) {
	if len(a.services) > 0 || a.jwt != nil || len(a.keys.keys) > 0 {
		return false, nil
	}
	if a.stored == nil {
		return true, nil
	}
	has, err := a.stored.hasAny(ctx)
	return !has, err
}
