package config

import (
	"fmt"
	"strings"

	"github.com/agentstream/agentstream/internal/origin"
)

// validateBrowsers checks http.cors and auth.run_tokens.
func (c Config) validateBrowsers(bad func(path, format string, args ...any)) {
	for i, o := range c.HTTP.CORS.AllowedOrigins {
		path := fmt.Sprintf("http.cors.allowed_origins[%d]", i)
		if o == "*" {
			if !c.Auth.HasIdentity() {
				bad(path, `"*" needs auth.keys: without keys, any page a user opens could call their local server; list the origins instead`)
			}
			continue
		}
		if _, err := origin.Parse(o); err != nil {
			bad(path, "%v", err)
		}
	}
	for i, h := range c.HTTP.CORS.AllowedHeaders {
		if h == "" || strings.IndexFunc(h, func(r rune) bool { return !isTokenChar(r) }) >= 0 {
			bad(fmt.Sprintf("http.cors.allowed_headers[%d]", i), "%q is not a header name", h)
		}
	}
	if s := c.Auth.RunTokens.Secret; s != "" && len(s) < 32 {
		bad("auth.run_tokens.secret", "a secret needs at least 32 characters (this one has %d), e.g. from openssl rand -hex 32", len(s))
	}
	if c.Auth.RunTokens.TTL < 0 {
		bad("auth.run_tokens.ttl", "%v must not be negative", c.Auth.RunTokens.TTL)
	}
}

// isTokenChar reports whether r may be in an HTTP header name (RFC 9110's
// tchar).
func isTokenChar(r rune) bool {
	switch {
	case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		return true
	}
	return strings.ContainsRune("!#$%&'*+-.^_`|~", r)
}
