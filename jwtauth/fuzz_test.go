package jwtauth_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/internal/jwtest"
	"github.com/agentstream/agentstream/jwtauth"
	"github.com/golang-jwt/jwt/v5"
)

// signedWithSecret reports whether tok's signature is the HMAC-SHA256 of
// its header and claims under the secret.
func signedWithSecret(tok string) bool {
	i := strings.LastIndexByte(tok, '.')
	if i < 0 {
		return false
	}
	sig, err := base64.RawURLEncoding.DecodeString(tok[i+1:])
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(tok[:i]))
	return err == nil && hmac.Equal(sig, m.Sum(nil))
}

// FuzzVerify fuzzes the JWT a client sends: made of a header, claims and
// a signature of the fuzzer's, or given whole. Only a token signed with
// the secret verifies; every refusal is a 401 *agentstream.Error with a
// short message that repeats nothing of the token.
func FuzzVerify(f *testing.F) {
	valid := jwtest.HS256(f, secret, jwt.MapClaims{"sub": "ada", "exp": 4102444800})
	f.Add(`{"alg":"HS256","typ":"JWT"}`, `{"sub":"ada","exp":4102444800}`, "sig", valid)
	f.Add(`{"alg":"none"}`, `{"sub":"ada","exp":4102444800}`, "", "eyJ.eyJ.")
	f.Add(`{"alg":"`+strings.Repeat("A", 5000)+`"}`, `{"sub":1}`, "x", "a.b.c")
	f.Add(`{"alg":"RS256","kid":"\n\u0000"}`, `{"exp":"soon","aud":[1]}`, "AAAA", "...")
	f.Add(`[]`, `null`, "=", "eyJhbGciOiJIUzI1NiJ9.e30.")
	v := newVerifier(f, jwtauth.Config{Secret: secret, Leeway: 30 * time.Second})
	if user, err := v.Verify(context.Background(), valid); err != nil || user != "ada" || !signedWithSecret(valid) {
		f.Fatalf("the valid token: %q, %v", user, err)
	}
	f.Fuzz(func(t *testing.T, header, claims, sig, whole string) {
		enc := base64.RawURLEncoding.EncodeToString
		for _, tok := range []string{enc([]byte(header)) + "." + enc([]byte(claims)) + "." + sig, whole} {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			user, err := v.Verify(ctx, tok)
			cancel()
			if err == nil {
				// Only what the secret signed passes (this run's token or
				// one the test signed on an earlier run, kept by the fuzzer).
				if !signedWithSecret(tok) || user == "" {
					t.Fatalf("%q verified as %q", tok, user)
				}
				continue
			}
			var e *agentstream.Error
			if !errors.As(err, &e) || e.Code != agentstream.CodeUnauthorized || user != "" {
				t.Fatalf("%q: %q, %v (%T); want a 401 *agentstream.Error", tok, user, err, err)
			}
			if len(e.Message) > 300 {
				t.Fatalf("a message of %d bytes: %.300q", len(e.Message), e.Message)
			}
			if len(tok) >= 12 && strings.Contains(e.Message, tok) {
				t.Fatalf("the message repeats the token: %q", e.Message)
			}
		}
	})
}
