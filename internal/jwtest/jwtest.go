// Package jwtest signs JWTs and serves a JWKS whose keys a test rotates,
// for the tests of JWT authentication.
package jwtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

// Key is a signing key and its kid.
type Key struct {
	KID     string
	Method  jwt.SigningMethod
	private any
	public  any
}

// NewRSA returns an RS256 key named kid.
func NewRSA(t testing.TB, kid string) Key {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return Key{KID: kid, Method: jwt.SigningMethodRS256, private: k, public: &k.PublicKey}
}

// NewEC returns an ES256 key named kid.
func NewEC(t testing.TB, kid string) Key {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return Key{KID: kid, Method: jwt.SigningMethodES256, private: k, public: &k.PublicKey}
}

// Sign returns claims signed by k, with its kid in the header.
func (k Key) Sign(t testing.TB, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(k.Method, claims)
	tok.Header["kid"] = k.KID
	s, err := tok.SignedString(k.private)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// HS256 returns claims signed with secret.
func HS256(t testing.TB, secret string, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Claims returns claims of user from iss for aud, valid for an hour.
func Claims(user, iss, aud string) jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{"sub": user, "iss": iss, "aud": aud, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
}

// JWKS serves the public keys it is set to, on loopback.
type JWKS struct {
	URL     string
	mu      sync.Mutex
	body    []byte
	fetches atomic.Int64
	// delay is how long each answer takes (nanoseconds), as a JWKS
	// across a real network does.
	delay atomic.Int64
}

// SetDelay makes every later answer take d.
func (j *JWKS) SetDelay(d time.Duration) { j.delay.Store(int64(d)) }

// ServeJWKS starts a JWKS serving keys; it stops at cleanup.
func ServeJWKS(t testing.TB, keys ...Key) *JWKS {
	t.Helper()
	j := &JWKS{}
	j.Set(t, keys...)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		j.fetches.Add(1)
		time.Sleep(time.Duration(j.delay.Load()))
		j.mu.Lock()
		b := j.body
		j.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
	}))
	t.Cleanup(srv.Close)
	j.URL = srv.URL + "/.well-known/jwks.json"
	return j
}

// Set replaces the keys served: a rotation.
func (j *JWKS) Set(t testing.TB, keys ...Key) {
	t.Helper()
	var set jwkset.JWKSMarshal
	for _, k := range keys {
		jwk, err := jwkset.NewJWKFromKey(k.public, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{
			KID: k.KID, ALG: jwkset.ALG(k.Method.Alg()), USE: jwkset.UseSig,
		}})
		if err != nil {
			t.Fatal(err)
		}
		set.Keys = append(set.Keys, jwk.Marshal())
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	j.mu.Lock()
	j.body = b
	j.mu.Unlock()
}

// Fetches counts the requests the JWKS answered.
func (j *JWKS) Fetches() int64 { return j.fetches.Load() }
