package jwtauth_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/internal/jwtest"
	"github.com/agentstream/agentstream/jwtauth"
	"github.com/golang-jwt/jwt/v5"
)

const secret = "0123456789abcdef0123456789abcdef"

func newVerifier(t testing.TB, c jwtauth.Config) *jwtauth.Verifier {
	t.Helper()
	v, err := jwtauth.New(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return v
}

func with(c jwt.MapClaims, mod func(jwt.MapClaims)) jwt.MapClaims {
	mod(c)
	return c
}

// TestVerifyHS256: each check of a shared-secret token, its failure
// named in the 401's message.
func TestVerifyHS256(t *testing.T) {
	t.Parallel()
	v := newVerifier(t, jwtauth.Config{Secret: secret, Issuer: "https://app.example", Audience: "agentstream", Leeway: 30 * time.Second})
	custom := newVerifier(t, jwtauth.Config{Secret: secret, UserClaim: "email"})
	rsa := jwtest.NewRSA(t, "k1")
	claims := func() jwt.MapClaims { return jwtest.Claims("ada", "https://app.example", "agentstream") }
	now := time.Now()
	for _, tc := range []struct {
		name  string
		v     *jwtauth.Verifier
		token string
		user  string // empty: refused
		want  string
	}{
		{"valid", v, jwtest.HS256(t, secret, claims()), "ada", ""},
		{"expired within leeway", v, jwtest.HS256(t, secret, with(claims(), func(c jwt.MapClaims) { c["exp"] = now.Add(-10 * time.Second).Unix() })), "ada", ""},
		{"expired", v, jwtest.HS256(t, secret, with(claims(), func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Minute).Unix() })), "", "has expired"},
		{"no exp", v, jwtest.HS256(t, secret, with(claims(), func(c jwt.MapClaims) { delete(c, "exp") })), "", "has no exp"},
		{"not yet", v, jwtest.HS256(t, secret, with(claims(), func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Hour).Unix() })), "", "not valid yet"},
		{"wrong audience", v, jwtest.HS256(t, secret, with(claims(), func(c jwt.MapClaims) { c["aud"] = "other" })), "", "(aud)"},
		{"no audience", v, jwtest.HS256(t, secret, with(claims(), func(c jwt.MapClaims) { delete(c, "aud") })), "", "(aud)"},
		{"wrong issuer", v, jwtest.HS256(t, secret, with(claims(), func(c jwt.MapClaims) { c["iss"] = "https://evil.example" })), "", "(iss)"},
		{"wrong secret", v, jwtest.HS256(t, strings.Repeat("x", 32), claims()), "", "invalid signature"},
		{"RS256 to a secret", v, rsa.Sign(t, claims()), "", "not accepted"},
		{"alg none", v, none(t, claims()), "", "not accepted"},
		{"malformed", v, "eyJhbGciOi.not.ajwt", "", "not a well-formed JWT"},
		{"no sub", v, jwtest.HS256(t, secret, with(claims(), func(c jwt.MapClaims) { delete(c, "sub") })), "", `no "sub" claim`},
		{"sub not a string", v, jwtest.HS256(t, secret, with(claims(), func(c jwt.MapClaims) { c["sub"] = 42 })), "", `no "sub" claim`},
		{"user claim", custom, jwtest.HS256(t, secret, with(claims(), func(c jwt.MapClaims) { c["email"] = "ada@example.com" })), "ada@example.com", ""},
		{"user claim missing", custom, jwtest.HS256(t, secret, claims()), "", `no "email" claim`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			user, err := tc.v.Verify(context.Background(), tc.token)
			if tc.user != "" {
				if err != nil || user != tc.user {
					t.Fatalf("Verify = %q, %v; want %q", user, err, tc.user)
				}
				return
			}
			e := agentstream.AsError(err)
			if err == nil || e.Code != agentstream.CodeUnauthorized || !strings.Contains(e.Message, tc.want) {
				t.Fatalf("Verify = %q, %v; want a 401 saying %q", user, err, tc.want)
			}
			if strings.Contains(e.Message, secret) || strings.Contains(e.Message, tc.token) {
				t.Fatalf("the message %q shows a secret", e.Message)
			}
		})
	}
}

func none(t testing.TB, c jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodNone, c).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestJWKSRotation: RS256 and ES256 keys from a JWKS; a token of a new
// key is accepted after a rotation without a new Verifier (an unknown kid
// fetches the set again), one of a removed key is refused, and a made-up
// kid is refused without a fetch when one was made lately.
func TestJWKSRotation(t *testing.T) {
	t.Parallel()
	old, ec, next := jwtest.NewRSA(t, "old"), jwtest.NewEC(t, "ec"), jwtest.NewRSA(t, "next")
	jwks := jwtest.ServeJWKS(t, old, ec)
	v := newVerifier(t, jwtauth.Config{JWKSURL: jwks.URL, Audience: "agentstream", RefreshUnknownKID: time.Hour})
	claims := jwtest.Claims("bo", "", "agentstream")
	verify := func(token string) (string, error) { return v.Verify(context.Background(), token) }

	for _, k := range []jwtest.Key{old, ec} {
		if user, err := verify(k.Sign(t, claims)); err != nil || user != "bo" {
			t.Fatalf("%s: %q, %v", k.KID, user, err)
		}
	}
	if _, err := verify(jwtest.HS256(t, secret, claims)); err == nil || !strings.Contains(err.Error(), "not accepted") {
		t.Fatalf("an HS256 token against a JWKS: %v", err)
	}
	jwks.Set(t, next, ec) // rotation: old removed, next added
	// A JWKS across a network takes a while to answer: the fetch an
	// unknown kid makes must be given that time.
	jwks.SetDelay(150 * time.Millisecond)
	before := jwks.Fetches()
	if user, err := verify(next.Sign(t, claims)); err != nil || user != "bo" {
		t.Fatalf("the new key after rotation: %q, %v", user, err)
	}
	if jwks.Fetches() != before+1 {
		t.Fatalf("%d fetches for the new kid, want 1", jwks.Fetches()-before)
	}
	if _, err := verify(old.Sign(t, claims)); err == nil || !strings.Contains(err.Error(), "kid") {
		t.Fatalf("the removed key: %v, want refused naming the kid", err)
	}
	stranger := jwtest.NewRSA(t, "stranger")
	if _, err := verify(stranger.Sign(t, claims)); err == nil || !strings.Contains(err.Error(), "kid") {
		t.Fatalf("an unknown kid: %v", err)
	}
	if jwks.Fetches() != before+1 {
		t.Fatalf("unknown kids fetched the JWKS %d more times within the refresh limit", jwks.Fetches()-before-1)
	}
}

// TestNewRefuses: a Verifier needs exactly one of a secret and a JWKS.
func TestNewRefuses(t *testing.T) {
	t.Parallel()
	for _, c := range []jwtauth.Config{{}, {Secret: secret, JWKSURL: "http://127.0.0.1:1/jwks"}} {
		if _, err := jwtauth.New(c); err == nil {
			t.Fatalf("New(%+v) succeeded", c)
		}
	}
}

func TestLooksLikeJWT(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]bool{
		jwtest.HS256(t, secret, jwtest.Claims("a", "", "")): true,
		"key-0123456789abcdef":                              false, "eyJ.only-two": false, "a.b.c": false, "": false,
	} {
		if got := jwtauth.LooksLikeJWT(s); got != want {
			t.Errorf("LooksLikeJWT(%q) = %v", s, got)
		}
	}
}

// TestJWKSDown: a JWKS that cannot be fetched at start does not stop
// New; the failure is reported, and tokens are refused until a fetch
// succeeds.
func TestJWKSDown(t *testing.T) {
	t.Parallel()
	errs := make(chan error, 10)
	// A closed port on loopback: nothing listens there.
	v := newVerifier(t, jwtauth.Config{JWKSURL: "http://127.0.0.1:1/jwks", OnRefreshError: func(err error) {
		select {
		case errs <- err:
		default:
		}
	}})
	select {
	case <-errs:
	case <-time.After(30 * time.Second):
		t.Fatal("the failed fetch was not reported")
	}
	k := jwtest.NewRSA(t, "k")
	if _, err := v.Verify(context.Background(), k.Sign(t, jwtest.Claims("a", "", ""))); err == nil {
		t.Fatal("a token was accepted without any key")
	}
}
