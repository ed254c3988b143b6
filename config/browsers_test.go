package config

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// TestBrowsersConfig: http.cors and auth.run_tokens decode, default,
// validate (each problem placed at its key), and the run token secret is
// a secret however written.
func TestBrowsersConfig(t *testing.T) {
	t.Parallel()
	env := map[string]string{"AS_TEST_RT_SECRET": strings.Repeat("s", 40)}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	c, err := LoadEnv("agentstream.yaml", []byte(`
auth:
  keys: [{key: key-0123456789abcdef, user: ann}]
  run_tokens: {secret: "${AS_TEST_RT_SECRET}", ttl: 2m}
http:
  cors:
    allowed_origins: ["https://app.example.com", "http://127.0.0.1:5173"]
    allowed_headers: [X-Custom]
`), lookup)
	if err != nil {
		t.Fatal(err)
	}
	c = c.WithDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Auth.RunTokens.TTL != 2*time.Minute || c.Auth.RunTokens.Secret != strings.Repeat("s", 40) ||
		!slices.Equal(c.HTTP.CORS.AllowedOrigins, []string{"https://app.example.com", "http://127.0.0.1:5173"}) || c.HTTP.CORS.AllowedHeaders[0] != "X-Custom" {
		t.Fatalf("decoded %+v %+v", c.Auth.RunTokens, c.HTTP.CORS)
	}
	if !slices.Contains(c.Secrets(), strings.Repeat("s", 40)) {
		t.Fatalf("the run token secret is not among the secrets")
	}
	if d := (Config{}).WithDefaults(); d.Auth.RunTokens.TTL != 10*time.Minute || d.Auth.RunTokens.Secret != "" || len(d.HTTP.CORS.AllowedOrigins) != 0 {
		t.Fatalf("defaults: %+v %+v", d.Auth.RunTokens, d.HTTP.CORS)
	}
	withKeys := func(c *Config) { c.Auth.Keys = []APIKey{{Key: "key-0123456789abcdef", User: "ann"}} }
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string // "" for valid
	}{
		{"any origin with keys", func(c *Config) { withKeys(c); c.HTTP.CORS.AllowedOrigins = []string{"*"} }, ""},
		{"any origin without keys", func(c *Config) { c.HTTP.CORS.AllowedOrigins = []string{"*"} }, `http.cors.allowed_origins[0]: "*" needs auth.keys`},
		{"local origins without keys", func(c *Config) { c.HTTP.CORS.AllowedOrigins = []string{"http://localhost:3000"} }, ""},
		{"a path", func(c *Config) { c.HTTP.CORS.AllowedOrigins = []string{"https://a.example", "https://b.example/app"} }, `http.cors.allowed_origins[1]: "https://b.example/app" is not an origin`},
		{"no scheme", func(c *Config) { c.HTTP.CORS.AllowedOrigins = []string{"app.example.com"} }, `allowed_origins[0]: "app.example.com" is not an origin`},
		{"a header with a space", func(c *Config) { c.HTTP.CORS.AllowedHeaders = []string{"X Custom"} }, `http.cors.allowed_headers[0]: "X Custom" is not a header name`},
		{"an empty header", func(c *Config) { c.HTTP.CORS.AllowedHeaders = []string{""} }, `allowed_headers[0]: "" is not a header name`},
		{"a short secret", func(c *Config) { c.Auth.RunTokens.Secret = "short" }, "auth.run_tokens.secret: a secret needs at least 32 characters (this one has 5)"},
		{"a negative ttl", func(c *Config) { c.Auth.RunTokens.TTL = -time.Second }, "auth.run_tokens.ttl: -1s must not be negative"},
	} {
		c := Config{}.WithDefaults()
		tc.mod(&c)
		err := c.Validate()
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want an error containing %q", tc.name, err, tc.want)
		}
	}
}
