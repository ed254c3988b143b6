package config

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// TestIdentityConfig: auth.jwt and auth.service_keys decode with
// ${VAR}s, default, count as an identity (a public address), keep their
// secrets secret, and each problem is placed at its line.
func TestIdentityConfig(t *testing.T) {
	t.Parallel()
	env := map[string]string{"AS_TEST_JWT": strings.Repeat("j", 40), "AS_TEST_SVC": "svc-0123456789abcdef"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	c, err := LoadEnv("agentstream.yaml", []byte(`
addr: 0.0.0.0:8080
auth:
  jwt:
    secret: ${AS_TEST_JWT}
    issuer: https://app.example
    audience: agentstream
  service_keys: [{key: "${AS_TEST_SVC}", name: django}]
`), lookup)
	if err != nil {
		t.Fatal(err)
	}
	c = c.WithDefaults()
	if err := c.Validate(); err != nil {
		t.Fatalf("a public address with JWTs and service keys: %v", err)
	}
	j := c.Auth.JWT
	if j.Secret != env["AS_TEST_JWT"] || j.Issuer != "https://app.example" || j.Audience != "agentstream" || j.Leeway != 30*time.Second || j.UserClaim != "sub" ||
		len(c.Auth.ServiceKeys) != 1 || c.Auth.ServiceKeys[0] != (ServiceKey{Key: env["AS_TEST_SVC"], Name: "django"}) {
		t.Fatalf("decoded %+v %+v", j, c.Auth.ServiceKeys)
	}
	for _, s := range []string{env["AS_TEST_JWT"], env["AS_TEST_SVC"]} {
		if !slices.Contains(c.Secrets(), s) {
			t.Fatalf("%q is not among the secrets", s)
		}
	}
	if d := (Config{}).WithDefaults(); d.Auth.JWT.Enabled() || d.Auth.HasIdentity() {
		t.Fatalf("defaults: %+v", d.Auth)
	}

	for _, tc := range []struct {
		name, yaml string
		want       string // "" for valid
	}{
		{"jwks on https", "auth:\n  jwt:\n    jwks_url: https://id.example/.well-known/jwks.json\n    user_claim: email\n    leeway: 5s\n", ""},
		{"jwks on loopback http", "auth:\n  jwt:\n    jwks_url: http://127.0.0.1:9000/jwks\n", ""},
		{"jwks on public http", "auth:\n  jwt:\n    jwks_url: http://id.example/jwks\n", `agentstream.yaml:3:5: auth.jwt.jwks_url: "http://id.example/jwks" must be https`},
		{"jwks not a URL", "auth:\n  jwt:\n    jwks_url: id.example/jwks\n", `agentstream.yaml:3:5: auth.jwt.jwks_url: "id.example/jwks" is not an absolute URL`},
		{"both", "auth:\n  jwt:\n    secret: " + strings.Repeat("s", 32) + "\n    jwks_url: https://id.example/jwks\n", "agentstream.yaml:4:5: auth.jwt.jwks_url: set either auth.jwt.secret (HS256) or auth.jwt.jwks_url (RS256/ES256), not both"},
		{"short secret", "auth:\n  jwt:\n    secret: short-secret\n", "agentstream.yaml:3:5: auth.jwt.secret: an HS256 secret needs at least 32 characters (this one has 12)"},
		{"audience alone", "auth:\n  jwt:\n    audience: agentstream\n", "auth.jwt: issuer and audience need auth.jwt.secret or auth.jwt.jwks_url"},
		{"negative leeway", "auth:\n  jwt:\n    secret: " + strings.Repeat("s", 32) + "\n    leeway: -1s\n", "agentstream.yaml:4:5: auth.jwt.leeway: -1s must not be negative"},
		{"short service key", "auth:\n  service_keys:\n    - {key: short, name: django}\n", "auth.service_keys[0].key: a key needs at least 16 characters (this one has 5)"},
		{"nameless service key", "auth:\n  service_keys:\n    - {key: svc-0123456789abcdef}\n", "auth.service_keys[0].name: empty"},
		{"service key is an API key", "auth:\n  keys: [{key: key-0123456789abcdef, user: ann}]\n  service_keys:\n    - {key: key-0123456789abcdef, name: django}\n", "auth.service_keys[0].key: the same key as auth.keys[0]"},
		{"public address, no identity", "addr: 0.0.0.0:8080\n", "no identity is configured: add auth.keys, auth.service_keys or auth.jwt"},
		{"unknown key", "auth:\n  jwt:\n    secrte: x\n", "secrte"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := LoadEnv("agentstream.yaml", []byte(tc.yaml), lookup)
			if err == nil {
				err = c.WithDefaults().Validate()
			}
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%v; want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestStoreMayHoldKeys: with StoreMayHoldKeys, Validate leaves an addr
// beyond loopback without identity to the caller (server.New checks the
// store); without it, the problem names agentstream keys create.
func TestStoreMayHoldKeys(t *testing.T) {
	t.Parallel()
	c := Config{Addr: "0.0.0.0:8080"}.WithDefaults()
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "agentstream keys create") {
		t.Fatalf("without the option: %v", err)
	}
	if err := c.Validate(StoreMayHoldKeys()); err != nil {
		t.Fatalf("with StoreMayHoldKeys: %v", err)
	}
	for addr, want := range map[string]bool{"0.0.0.0:8080": false, "127.0.0.1:0": true, "[::1]:80": true, "localhost:1": true, "10.0.0.1:80": false} {
		if got := (Config{Addr: addr}).ListensOnLoopback(); got != want {
			t.Errorf("ListensOnLoopback(%s) = %v", addr, got)
		}
	}
}
