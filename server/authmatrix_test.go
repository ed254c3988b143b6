package server_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/config"
	"github.com/agentstream/agentstream/internal/jwtest"
	"github.com/agentstream/agentstream/sim"
	"github.com/golang-jwt/jwt/v5"
)

// matrixRoute is how TestAuthMatrix calls one route: its request, with
// {thread}, {run} and {chat} standing for the owner's thread, run and
// useChat chat; and whether another user calling it on those is 404.
type matrixRoute struct {
	path, body string
	// foreign is true when the request names the owner's resource, so
	// another user must get 404; otherwise why says what the route holds
	// of a user's, if anything.
	foreign bool
	why     string
	// foreignStatus is the answer to another user, when not 404.
	foreignStatus int
}

// authMatrixRoutes has a row for every route of the API (server.Routes):
// a route added without a row here fails TestAuthMatrix.
var authMatrixRoutes = map[string]matrixRoute{
	"GET /v1/agents":                {path: "/v1/agents", why: "the config's agents: nothing of a user's"},
	"POST /v1/threads":              {path: "/v1/threads", body: `{}`, why: "creates a thread of the caller's"},
	"GET /v1/threads":               {path: "/v1/threads", why: "lists the caller's threads only (TestThreadsList)"},
	"GET /v1/threads/{id}":          {path: "/v1/threads/{thread}", foreign: true},
	"PATCH /v1/threads/{id}":        {path: "/v1/threads/{thread}", body: `{"title": "taken"}`, foreign: true},
	"DELETE /v1/threads/{id}":       {path: "/v1/threads/{thread}", foreign: true},
	"GET /v1/threads/{id}/messages": {path: "/v1/threads/{thread}/messages", foreign: true},
	"GET /v1/threads/{id}/runs":     {path: "/v1/threads/{thread}/runs", foreign: true},
	"POST /v1/threads/{id}/runs":    {path: "/v1/threads/{thread}/runs", body: `{"input": "hi"}`, foreign: true},
	"GET /v1/runs/{id}":             {path: "/v1/runs/{run}", foreign: true},
	"GET /v1/runs/{id}/events":      {path: "/v1/runs/{run}/events", foreign: true},
	"POST /v1/runs/{id}/cancel":     {path: "/v1/runs/{run}/cancel", foreign: true},
	"POST /v1/runs/{id}/token":      {path: "/v1/runs/{run}/token", foreign: true},
	"POST /v1/chat":                 {path: "/v1/chat", body: `{"query": "hi"}`, why: "a thread_id the client chooses is the caller's own (ThreadKey): another user's id names a thread of the caller's"},
	"POST /ag-ui/{agent}":           {path: "/ag-ui/tester", body: `{"threadId": "t1", "runId": "r1", "messages": [{"id": "m1", "role": "user", "content": "hi"}]}`, why: "a thread id the client chooses is the caller's own (ThreadKey)"},
	"POST /api/chat":                {path: "/api/chat", body: `{"id": "c1", "messages": [{"id": "m1", "role": "user", "parts": [{"type": "text", "text": "hi"}]}]}`, why: "a chat id the client chooses is the caller's own (ThreadKey)"},
	// useChat asks for a chat's active stream: 204 when there is none,
	// for an unknown chat and another user's alike.
	"GET /api/chat/{id}/stream": {path: "/api/chat/{chat}/stream", foreign: true, foreignStatus: http.StatusNoContent},
	"POST /v1/chat/completions": {path: "/v1/chat/completions", body: `{"model": "tester", "messages": [{"role": "user", "content": "hi"}]}`, why: "starts a new thread of the caller's"},
	"GET /v1/models":            {path: "/v1/models", why: "the config's agents as models: nothing of a user's"},
	"GET /v1/models/{model}":    {path: "/v1/models/tester", why: "the config's agents as models: nothing of a user's"},
}

// authMatrixPublic are the routes that answer anyone: the health checks,
// which a load balancer calls without credentials and which say nothing
// of any user. (This server has no page at / and no /metrics: / is the
// catch-all's 404.)
var authMatrixPublic = []string{"GET /healthz", "GET /readyz"}

// TestAuthMatrix: every route of the API × every kind of bad credential
// is 401 with the JSON error shape, before anything is read or done; and
// every route that names a user's resource is 404 to each other kind of
// identity (a config key, a stored key, a JWT, a service key acting for
// another user). The routes come from the server itself.
func TestAuthMatrix(t *testing.T) {
	t.Parallel()
	const iss, aud = "https://app.example", "agentstream"
	signer, stranger := jwtest.NewRSA(t, "k1"), jwtest.NewRSA(t, "not-in-the-jwks")
	jwks := jwtest.ServeJWKS(t, signer)
	e := start(t, sim.Options{}, func(c *config.Config) {
		c.Auth.JWT = config.JWT{JWKSURL: jwks.URL, Issuer: iss, Audience: aud}
		c.Auth.ServiceKeys = []config.ServiceKey{{Key: identitySvc, Name: "backend"}}
		c.Auth.Keys = []config.APIKey{{Key: identityKey, User: "carol"}}
	})

	// Every registered route has a row, and every row a route.
	var routes []string
	for _, p := range e.srv.Routes() {
		if !slices.Contains(authMatrixPublic, p) {
			routes = append(routes, p)
		}
		if _, ok := authMatrixRoutes[p]; !ok && !slices.Contains(authMatrixPublic, p) {
			t.Errorf("route %q has no row in authMatrixRoutes: add one (or, if it answers anyone, to authMatrixPublic, saying why)", p)
		}
	}
	for p := range authMatrixRoutes {
		if !slices.Contains(routes, p) {
			t.Errorf("authMatrixRoutes has %q, which the server does not register", p)
		}
	}
	if len(routes) < 20 {
		t.Fatalf("the server registers %d authenticated routes: %v", len(routes), routes)
	}

	// Stored keys: dora's works, erin's is revoked.
	ks := openStore(t, e.srv.Config().DatabaseURL).(agentstream.KeyStore)
	dora, doraKey := agentstream.NewAPIKey("dora", "", time.Now())
	revoked, erinKey := agentstream.NewAPIKey("erin", "", time.Now())
	for _, k := range []agentstream.APIKey{doraKey, erinKey} {
		if err := ks.CreateKey(t.Context(), k); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ks.RevokeKey(t.Context(), erinKey.ID, time.Now()); err != nil {
		t.Fatal(err)
	}

	claims := func(mod func(jwt.MapClaims)) jwt.MapClaims {
		c := jwtest.Claims("bob", iss, aud)
		if mod != nil {
			mod(c)
		}
		return c
	}
	bad := []struct {
		name   string
		header map[string]string
	}{
		{"no credential", nil},
		{"malformed credential", map[string]string{"Authorization": "Bearer eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.c2ln"}},
		{"not a bearer", map[string]string{"Authorization": "Basic Ym9iOnB3"}},
		{"expired JWT", bearerOf(signer.Sign(t, claims(func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Hour).Unix() })))},
		{"wrong audience", bearerOf(signer.Sign(t, claims(func(c jwt.MapClaims) { c["aud"] = "another-api" })))},
		{"wrong issuer", bearerOf(signer.Sign(t, claims(func(c jwt.MapClaims) { c["iss"] = "https://evil.example" })))},
		{"unknown kid", bearerOf(stranger.Sign(t, claims(nil)))},
		{"revoked stored key", bearerOf(revoked)},
		{"unknown stored key", bearerOf(agentstream.APIKeyPrefix + "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")},
		{"unknown config key", bearerOf("api-key-never-configured")},
		{"service key without the user header", bearerOf(identitySvc)},
	}

	// The owner's thread, run and useChat chat, through the service key.
	owner := asService("owner")
	var th agentstream.Thread
	status, body := idAnswer(e, "POST", "/v1/threads", `{"title": "owner's"}`, owner)
	if status != http.StatusCreated || json.Unmarshal([]byte(body), &th) != nil {
		t.Fatalf("the owner's thread: %d %s", status, body)
	}
	if status, body := idAnswer(e, "POST", "/v1/threads/"+th.ID+"/runs", `{"input": "hello"}`, owner); status != http.StatusOK {
		t.Fatalf("the owner's run: %d %s", status, body)
	}
	var runs struct {
		Data []agentstream.Run `json:"data"`
	}
	status, body = idAnswer(e, "GET", "/v1/threads/"+th.ID+"/runs", "", owner)
	if status != http.StatusOK || json.Unmarshal([]byte(body), &runs) != nil || len(runs.Data) != 1 {
		t.Fatalf("the owner's runs: %d %s", status, body)
	}
	if status, body := idAnswer(e, "POST", "/api/chat", authMatrixRoutes["POST /api/chat"].body, owner); status != http.StatusOK {
		t.Fatalf("the owner's chat: %d %s", status, body)
	}
	expand := func(s string) string {
		return strings.NewReplacer("{thread}", th.ID, "{run}", runs.Data[0].ID, "{chat}", "c1").Replace(s)
	}
	others := []struct {
		name   string
		header map[string]string
	}{
		{"config key", bearerOf(identityKey)},
		{"stored key", bearerOf(dora)},
		{"JWT", bearerOf(signer.Sign(t, claims(nil)))},
		{"service key for another user", asService("mallory")},
	}

	for _, pattern := range routes {
		row := authMatrixRoutes[pattern]
		method, _, _ := strings.Cut(pattern, " ")
		path, reqBody := expand(row.path), expand(row.body)
		for _, c := range bad {
			h := map[string]string{"Content-Type": "application/json"}
			for k, v := range c.header {
				h[k] = v
			}
			resp := e.requestCtx(streamCtx(t), method, path, reqBody, h)
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s with %s: %d, want 401", pattern, c.name, resp.StatusCode)
				_ = resp.Body.Close()
				continue
			}
			if got := errorBody(t, resp); got.Code != agentstream.CodeUnauthorized {
				t.Errorf("%s with %s: error %+v, want code unauthorized", pattern, c.name, got)
			}
			_ = resp.Body.Close()
		}
		if !row.foreign {
			if row.why == "" {
				t.Errorf("%s: a row that names no resource of the owner says why", pattern)
			}
			continue
		}
		for _, o := range others {
			h := map[string]string{"Content-Type": "application/json"}
			for k, v := range o.header {
				h[k] = v
			}
			resp := e.requestCtx(streamCtx(t), method, path, reqBody, h)
			if row.foreignStatus != 0 {
				if resp.StatusCode != row.foreignStatus {
					t.Errorf("%s as %s: %d, want %d", pattern, o.name, resp.StatusCode, row.foreignStatus)
				}
				_ = resp.Body.Close()
				continue
			}
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("%s as %s: %d, want 404", pattern, o.name, resp.StatusCode)
				_ = resp.Body.Close()
				continue
			}
			if got := errorBody(t, resp); got.Code != agentstream.CodeNotFound {
				t.Errorf("%s as %s: error %+v, want code not_found", pattern, o.name, got)
			}
			_ = resp.Body.Close()
		}
	}
	// Nothing of the owner's changed: the thread is there, titled as made.
	status, body = idAnswer(e, "GET", "/v1/threads/"+th.ID, "", owner)
	if status != http.StatusOK || !strings.Contains(body, `"title":"owner's"`) {
		t.Fatalf("the owner's thread after the matrix: %d %s", status, body)
	}
}
