package httpapi

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/agentstream/agentstream"
)

// Identity is who is calling, and how they proved it.
type Identity struct {
	// UserID owns what the request creates and is all it may read.
	UserID string
	// Via is how the caller was authenticated: ViaAPIKey, ViaLocal,
	// ViaRunToken, or another Authenticator's own.
	Via string
	// RunID is the one run a run token opens; empty otherwise.
	RunID string
}

// The ways agentstream authenticates by itself.
const (
	ViaAPIKey   = "api_key"   // Authorization: Bearer <one of auth.keys, or a stored key>
	ViaLocal    = "local"     // no keys configured: everyone is LocalUser
	ViaRunToken = "run_token" // ?token= from POST /v1/runs/{id}/token
)

// Authenticator answers "who is calling" for every route but the health
// checks. It reads only the request's headers and URL, never its body,
// so that a caller who is refused is answered before sending one. A
// failure is an *agentstream.Error of CodeUnauthorized (401) whose
// message says what to send.
type Authenticator interface {
	Authenticate(r *http.Request) (Identity, error)
}

// KeyAuthenticator authenticates API keys sent as bearer tokens; with no
// keys every caller is LocalUser.
type KeyAuthenticator struct {
	// keys maps the SHA-256 of each key to its user, so lookups do not
	// compare secrets byte by byte.
	keys map[[32]byte]string
}

// NewKeyAuthenticator returns the Authenticator of keys, which maps keys
// to user IDs.
func NewKeyAuthenticator(keys map[string]string) *KeyAuthenticator {
	a := &KeyAuthenticator{keys: make(map[[32]byte]string, len(keys))}
	for k, u := range keys {
		a.keys[sha256.Sum256([]byte(k))] = u
	}
	return a
}

// Authenticate implements Authenticator.
func (a *KeyAuthenticator) Authenticate(r *http.Request) (Identity, error) {
	if len(a.keys) == 0 {
		return Identity{UserID: LocalUser, Via: ViaLocal}, nil
	}
	token, ok := bearer(r.Header.Get("Authorization"))
	if !ok {
		return Identity{}, agentstream.Errorf(agentstream.CodeUnauthorized, "missing credential: send Authorization: Bearer <key>")
	}
	user, ok := a.keys[sha256.Sum256([]byte(token))]
	if !ok {
		return Identity{}, agentstream.Errorf(agentstream.CodeUnauthorized, "the API key is not valid")
	}
	return Identity{UserID: user, Via: ViaAPIKey}, nil
}

// tokenRoutes are the routes that take a run token as ?token=, for the
// run named by their {id}: a browser's EventSource cannot send an
// Authorization header. Every other route ignores ?token=.
var tokenRoutes = map[string]bool{
	"GET /v1/runs/{id}/events": true,
}

// identify answers who is calling: the run token of a route that takes
// one, else the Authenticator's answer. A run token is taken out of the
// request's URL, so that nothing after this (a handler, a log line) sees
// it.
func (s *Server) identify(r *http.Request) (Identity, *http.Request, error) {
	q := r.URL.Query()
	if tokenRoutes[r.Pattern] && q.Has("token") {
		id, err := s.tokens.verify(q.Get("token"), r.PathValue("id"), time.Now())
		if err != nil {
			return Identity{}, r, err
		}
		q.Del("token")
		u := *r.URL
		u.RawQuery = q.Encode()
		r = r.WithContext(r.Context())
		r.URL, r.RequestURI = &u, u.RequestURI()
		return id, r, nil
	}
	id, err := s.auth.Authenticate(r)
	if err != nil && q.Has("token") {
		e := agentstream.AsError(err)
		return Identity{}, r, agentstream.Errorf(e.Code, "%s (a run token opens only GET /v1/runs/{id}/events of its run)", e.Message)
	}
	return id, r, err
}

// authenticated resolves the request's user and passes it to h. A caller
// who is refused is answered without reading the request's body.
func (s *Server) authenticated(h func(http.ResponseWriter, *http.Request, string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r, user := s.authorize(w, r); r != nil {
			h(w, r, user)
		}
	}
}

// authorize returns the request (identify may change it) and its
// caller's user, or answers a caller who is refused, without reading the
// request's body, and returns nil.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) (*http.Request, string) {
	id, r, err := s.identify(r)
	if err == nil {
		err = s.limitRate(r, id.UserID)
	}
	if err != nil {
		skipBody(w, r)
		s.writeError(w, r, err)
		return nil, ""
	}
	return r, id.UserID
}

func bearer(h string) (string, bool) {
	const prefix = "Bearer "
	if len(h) <= len(prefix) || !equalFold(h[:len(prefix)], prefix) {
		return "", false
	}
	return h[len(prefix):], true
}

func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range len(a) {
		x, y := a[i]|0x20, b[i]|0x20
		if x != y {
			return false
		}
	}
	return true
}

// runTokens issues and verifies run tokens: "rt1.<payload>.<mac>", the
// payload the base64url of {"run","user","exp"} and the mac its
// HMAC-SHA256 under the secret, so every instance that shares the secret
// verifies every instance's tokens without a store.
type runTokens struct {
	secret []byte
	ttl    time.Duration
}

const runTokenPrefix = "rt1."

type runTokenClaims struct {
	Run  string `json:"run"`
	User string `json:"user"`
	Exp  int64  `json:"exp"` // Unix seconds
}

// newRunTokens returns the run tokens of secret, or of a random secret
// when it is empty (one instance only: no other can verify them).
func newRunTokens(secret []byte, ttl time.Duration) *runTokens {
	if len(secret) == 0 {
		secret = make([]byte, 32)
		_, _ = rand.Read(secret) // never fails (crypto/rand panics instead)
	}
	return &runTokens{secret: secret, ttl: ttl}
}

func (t *runTokens) mac(payload string) []byte {
	m := hmac.New(sha256.New, t.secret)
	m.Write([]byte(payload))
	return m.Sum(nil)
}

// issue returns a token for user's run runID, and when it expires.
func (t *runTokens) issue(user, runID string, now time.Time) (string, time.Time) {
	exp := now.Add(t.ttl).Truncate(time.Second)
	claims, _ := json.Marshal(runTokenClaims{Run: runID, User: user, Exp: exp.Unix()}) // strings and an int: cannot fail
	payload := base64.RawURLEncoding.EncodeToString(claims)
	return runTokenPrefix + payload + "." + base64.RawURLEncoding.EncodeToString(t.mac(payload)), exp.UTC()
}

// verify returns the identity of token for the run runID. The messages
// tell a tampered token from an expired one or another run's, never
// anything of the secret.
func (t *runTokens) verify(token, runID string, now time.Time) (Identity, error) {
	bad := func(why string) (Identity, error) {
		return Identity{}, agentstream.Errorf(agentstream.CodeUnauthorized, "the run token %s: get a new one with POST /v1/runs/{id}/token", why)
	}
	rest, ok := strings.CutPrefix(token, runTokenPrefix)
	payload, sig, ok2 := strings.Cut(rest, ".")
	if !ok || !ok2 {
		return bad("is not one")
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, t.mac(payload)) {
		return bad("is not valid")
	}
	raw, err := base64.RawURLEncoding.DecodeString(payload)
	var c runTokenClaims
	if err != nil || json.Unmarshal(raw, &c) != nil || c.Run == "" || c.User == "" {
		return bad("is not valid") // signed by us but unreadable: a different format
	}
	if c.Run != runID {
		return bad("is for another run")
	}
	if !now.Before(time.Unix(c.Exp, 0)) {
		return bad("has expired")
	}
	return Identity{UserID: c.User, Via: ViaRunToken, RunID: c.Run}, nil
}

type runTokenResponse struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
}

// runToken answers POST /v1/runs/{id}/token: a token that opens the
// caller's run's events for Options.RunTokenTTL, for a browser's
// EventSource (?token=). The request has no body.
func (s *Server) runToken(w http.ResponseWriter, r *http.Request, user string) {
	run, err := s.store.GetRun(r.Context(), user, r.PathValue("id"))
	if err != nil {
		skipBody(w, r)
		s.writeError(w, r, err)
		return
	}
	token, exp := s.tokens.issue(user, run.ID, time.Now())
	writeJSON(w, http.StatusOK, runTokenResponse{Token: token, ExpiresAt: exp})
}

// limitRate takes one request from the user's rate (Options.RateLimiter),
// or returns the 429 that refuses it. A limiter that fails (Redis down)
// lets the request through: the rate limit is a guard, not a service.
func (s *Server) limitRate(r *http.Request, userID string) error {
	if s.opts.RateLimiter == nil {
		return nil
	}
	ok, wait, err := s.opts.RateLimiter.Allow(r.Context(), userID)
	switch {
	case err != nil:
		// One line per outage and per minute, not one per request.
		if now := time.Now().UnixNano(); now-s.limiterWarned.Load() >= int64(time.Minute) {
			s.limiterWarned.Store(now)
			s.logger.Warn("the rate limiter failed; requests go through unlimited until it is back", "user", userID, "err", err)
		}
		return nil
	case ok:
		return nil
	}
	e := agentstream.Errorf(agentstream.CodeUserRateLimited,
		"limits.requests_per_minute (%d) reached for this user; retry in %ss", s.opts.RequestsPerMinute, retryAfter(wait))
	e.RetryAfter = wait
	return e
}
