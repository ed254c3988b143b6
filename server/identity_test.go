package server_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/config"
	"github.com/agentstream/agentstream/internal/jwtest"
	"github.com/agentstream/agentstream/sim"
	"github.com/golang-jwt/jwt/v5"
)

const (
	identitySecret = "jwt-secret-0123456789abcdef-0123456789"
	identitySvc    = "svc-key-0123456789abcdef"
	identityKey    = "api-key-0123456789abcdef"
	identityIss    = "https://app.example"
	identityAud    = "agentstream"
)

// idAnswer sends method path with header and returns the status and body.
func idAnswer(e *env, method, path, body string, header map[string]string) (int, string) {
	e.t.Helper()
	resp := e.requestCtx(streamCtx(e.t), method, path, body, header)
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("%s %s: reading: %v", method, path, err)
	}
	return resp.StatusCode, string(b)
}

func bearerOf(token string) map[string]string {
	return map[string]string{"Authorization": "Bearer " + token}
}

func asService(user string) map[string]string {
	return map[string]string{"Authorization": "Bearer " + identitySvc, "X-Agentstream-User": user}
}

// TestIdentities: every kind of identity through the real server, with
// auth.jwt (HS256), auth.service_keys and auth.keys together. Each bad
// credential is a 401 saying why; a valid JWT creates a thread of its
// claim's user, which the service key acting for that user reads (one
// namespace) and nobody else sees (404).
func TestIdentities(t *testing.T) {
	t.Parallel()
	e := start(t, sim.Options{}, func(c *config.Config) {
		c.Auth.JWT = config.JWT{Secret: identitySecret, Issuer: identityIss, Audience: identityAud}
		c.Auth.ServiceKeys = []config.ServiceKey{{Key: identitySvc, Name: "django"}}
		c.Auth.Keys = []config.APIKey{{Key: identityKey, User: "carol"}}
	})
	claims := func(mod func(jwt.MapClaims)) jwt.MapClaims {
		c := jwtest.Claims("ada", identityIss, identityAud)
		if mod != nil {
			mod(c)
		}
		return c
	}
	ada := jwtest.HS256(t, identitySecret, claims(nil))
	rsa := jwtest.NewRSA(t, "k1")
	for _, tc := range []struct {
		name   string
		header map[string]string
		want   string // in the 401's message
	}{
		{"no credential", nil, "missing credential"},
		{"not bearer", map[string]string{"Authorization": "Basic YWRhOnB3"}, "missing credential"},
		{"malformed JWT", bearerOf("eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24.c2ln"), "not a well-formed JWT"},
		{"expired JWT", bearerOf(jwtest.HS256(t, identitySecret, claims(func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Hour).Unix() }))), "has expired"},
		{"JWT without exp", bearerOf(jwtest.HS256(t, identitySecret, claims(func(c jwt.MapClaims) { delete(c, "exp") }))), "has no exp"},
		{"wrong audience", bearerOf(jwtest.HS256(t, identitySecret, claims(func(c jwt.MapClaims) { c["aud"] = "another-api" }))), "(aud)"},
		{"wrong issuer", bearerOf(jwtest.HS256(t, identitySecret, claims(func(c jwt.MapClaims) { c["iss"] = "https://evil.example" }))), "(iss)"},
		{"wrong secret", bearerOf(jwtest.HS256(t, strings.Repeat("x", 40), claims(nil))), "invalid signature"},
		{"RS256 for an HS256 server", bearerOf(rsa.Sign(t, claims(nil))), "is not accepted"},
		{"unknown API key", bearerOf("api-key-not-configured-at-all"), "API key is not valid"},
		{"service key without user", bearerOf(identitySvc), "must name the end user in X-Agentstream-User"},
		{"service key, empty user", asService(""), "must name the end user in X-Agentstream-User"},
		{"service key, bad user", asService(strings.Repeat("a", 257)), "one user id"},
		{"user header with an API key", map[string]string{"Authorization": "Bearer " + identityKey, "X-Agentstream-User": "ada"}, "only with a service key"},
		{"user header with a JWT", map[string]string{"Authorization": "Bearer " + ada, "X-Agentstream-User": "bob"}, "only with a service key"},
		{"user header alone", map[string]string{"X-Agentstream-User": "ada"}, "missing credential"},
	} {
		{
			for _, r := range []struct{ method, path, body string }{
				{"GET", "/v1/threads", ""}, {"POST", "/v1/threads", "{}"}, {"POST", "/v1/chat", `{"query": "hi"}`},
			} {
				status, body := idAnswer(e, r.method, r.path, r.body, tc.header)
				if status != http.StatusUnauthorized || !strings.Contains(body, tc.want) {
					t.Fatalf("%s: %s %s: %d %s; want 401 saying %q", tc.name, r.method, r.path, status, body, tc.want)
				}
				if strings.Contains(body, identitySecret) || strings.Contains(body, identitySvc) {
					t.Fatalf("%s: the answer %s shows a secret", tc.name, body)
				}
			}
		}
	}

	// A valid JWT: the thread is its claim's user's.
	var th agentstream.Thread
	status, body := idAnswer(e, "POST", "/v1/threads", `{"title": "mine"}`, bearerOf(ada))
	if status != http.StatusCreated || json.Unmarshal([]byte(body), &th) != nil || th.UserID != "ada" {
		t.Fatalf("POST /v1/threads with a JWT: %d %s; want 201 owned by ada", status, body)
	}
	chat(e, ada, th.ID, "hello")
	// The service key acting for ada is ada: the same thread.
	if status, body := idAnswer(e, "GET", "/v1/threads/"+th.ID, "", asService("ada")); status != http.StatusOK || !strings.Contains(body, `"user_id":"ada"`) {
		t.Fatalf("ada's thread through the service key: %d %s", status, body)
	}
	var runs struct {
		Data []agentstream.Run `json:"data"`
	}
	status, body = idAnswer(e, "GET", "/v1/threads/"+th.ID+"/runs", "", asService("ada"))
	if status != http.StatusOK || json.Unmarshal([]byte(body), &runs) != nil || len(runs.Data) != 1 {
		t.Fatalf("ada's runs through the service key: %d %s", status, body)
	}
	run := runs.Data[0].ID
	// Everyone else: 404 on the thread, its runs and the run's events.
	bob := jwtest.HS256(t, identitySecret, jwtest.Claims("bob", identityIss, identityAud))
	for name, h := range map[string]map[string]string{
		"another JWT user": bearerOf(bob), "the service key for bob": asService("bob"), "an API key's user": bearerOf(identityKey),
	} {
		for _, path := range []string{"/v1/threads/" + th.ID, "/v1/threads/" + th.ID + "/runs", "/v1/runs/" + run + "/events"} {
			if status, body := idAnswer(e, "GET", path, "", h); status != http.StatusNotFound {
				t.Fatalf("%s: GET %s: %d %s; want 404", name, path, status, body)
			}
		}
		if status, body := idAnswer(e, "POST", "/v1/runs/"+run+"/cancel", "", h); status != http.StatusNotFound {
			t.Fatalf("%s: cancel: %d %s; want 404", name, status, body)
		}
	}
	// The JWT's user's events, through the service key acting for ada.
	if status, _ := idAnswer(e, "GET", "/v1/runs/"+run+"/events", "", asService("ada")); status != http.StatusOK {
		t.Fatalf("ada's run's events through the service key: %d", status)
	}
}

// TestIdentitiesJWKS: RS256 and ES256 tokens verified with the keys of a
// JWKS served by the test; a key added by a rotation is accepted without
// a restart, a removed key and an unknown kid are refused.
func TestIdentitiesJWKS(t *testing.T) {
	t.Parallel()
	k1, ec, k2 := jwtest.NewRSA(t, "k1"), jwtest.NewEC(t, "ec1"), jwtest.NewRSA(t, "k2")
	jwks := jwtest.ServeJWKS(t, k1, ec)
	e := start(t, sim.Options{}, func(c *config.Config) {
		c.Auth.JWT = config.JWT{JWKSURL: jwks.URL, Audience: identityAud, UserClaim: "email"}
	})
	claims := jwt.MapClaims{"email": "dee@example.com", "aud": identityAud, "exp": time.Now().Add(time.Hour).Unix()}
	ok := func(k jwtest.Key) {
		t.Helper()
		var th agentstream.Thread
		status, body := idAnswer(e, "POST", "/v1/threads", "{}", bearerOf(k.Sign(t, claims)))
		if status != http.StatusCreated || json.Unmarshal([]byte(body), &th) != nil || th.UserID != "dee@example.com" {
			t.Fatalf("a token of %s: %d %s; want 201 owned by the email claim", k.KID, status, body)
		}
	}
	refused := func(k jwtest.Key, want string) {
		t.Helper()
		if status, body := idAnswer(e, "GET", "/v1/threads", "", bearerOf(k.Sign(t, claims))); status != http.StatusUnauthorized || !strings.Contains(body, want) {
			t.Fatalf("a token of %s: %d %s; want 401 saying %q", k.KID, status, body, want)
		}
	}
	ok(k1)
	ok(ec)
	if status, body := idAnswer(e, "GET", "/v1/threads", "", bearerOf(jwtest.HS256(t, identitySecret, claims))); status != http.StatusUnauthorized || !strings.Contains(body, "not accepted") {
		t.Fatalf("an HS256 token against a JWKS: %d %s", status, body)
	}
	jwks.Set(t, k2, ec) // rotation: k1 removed, k2 added
	ok(k2)
	refused(k1, "kid")
	refused(jwtest.NewRSA(t, "nobody"), "kid")
}
