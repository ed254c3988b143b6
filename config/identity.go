package config

import (
	"fmt"
	"net/url"
	"time"
)

// JWT configures JWT bearer tokens (docs/security.md, "Identities"): a
// bearer credential shaped like a JWT is verified here, and the user is
// its UserClaim. Set Secret or JWKSURL, not both; neither means JWTs are
// not accepted. Every token must have exp.
type JWT struct {
	// Secret verifies HS256 tokens, at least 32 characters. Default
	// empty. May be written ${NAME}, read from the environment; a secret.
	Secret string `yaml:"secret" expand:"key"`
	// JWKSURL serves the public keys of RS256/RS384/RS512, PS256/384/512
	// and ES256/ES384/ES512 tokens, chosen by their kid. https, or http on
	// a loopback host. It is fetched at start, every hour, and when a
	// token names a kid it lacks (at most every 10s), so a rotated key is
	// picked up and a removed one refused without a restart. Default
	// empty.
	JWKSURL string `yaml:"jwks_url" expand:"plain"`
	// Issuer, when set, must equal the tokens' iss. Default empty: not
	// checked.
	Issuer string `yaml:"issuer"`
	// Audience, when set, must be in the tokens' aud. Default empty: not
	// checked.
	Audience string `yaml:"audience"`
	// Leeway is the clock skew allowed on exp, nbf and iat. Default 30s.
	Leeway time.Duration `yaml:"leeway"`
	// UserClaim names the claim whose string is the user id. Default sub.
	UserClaim string `yaml:"user_claim"`
}

// Enabled reports whether JWTs are accepted.
func (j JWT) Enabled() bool { return j.Secret != "" || j.JWKSURL != "" }

// ServiceKey is the key of a trusted backend, which names the end user
// of each request in X-Agentstream-User.
type ServiceKey struct {
	// Key is the bearer token, at least 16 characters. May be written
	// ${NAME}, read from the environment; a secret.
	Key string `yaml:"key" expand:"key"`
	// Name names the backend that holds the key, so that a reader of the
	// config knows whose key to rotate. Required.
	Name string `yaml:"name"`
}

// HasIdentity reports whether any credential is configured: API keys,
// service keys or JWTs. Without one, every caller is the local user and
// the server listens on loopback only.
func (a Auth) HasIdentity() bool {
	return len(a.Keys) > 0 || len(a.ServiceKeys) > 0 || a.JWT.Enabled()
}

func (j *JWT) withDefaults() {
	def(&j.Leeway, 30*time.Second)
	def(&j.UserClaim, "sub")
}

// validateIdentity checks auth.jwt and auth.service_keys.
func (c Config) validateIdentity(bad func(path, format string, args ...any)) {
	j := c.Auth.JWT
	switch {
	case j.Secret != "" && j.JWKSURL != "":
		bad("auth.jwt.jwks_url", "set either auth.jwt.secret (HS256) or auth.jwt.jwks_url (RS256/ES256), not both")
	case j.Secret != "" && len(j.Secret) < 32:
		bad("auth.jwt.secret", "an HS256 secret needs at least 32 characters (this one has %d), e.g. from openssl rand -hex 32", len(j.Secret))
	case j.JWKSURL != "":
		u, err := url.Parse(j.JWKSURL)
		switch {
		case err != nil || u.Host == "":
			bad("auth.jwt.jwks_url", "%q is not an absolute URL", j.JWKSURL)
		case u.Scheme == "https":
		case u.Scheme == "http" && isLoopback(u.Hostname()):
		default:
			bad("auth.jwt.jwks_url", "%q must be https (or http on a loopback host): the keys it serves decide who may call", j.JWKSURL)
		}
	case !j.Enabled() && (j.Issuer != "" || j.Audience != ""):
		bad("auth.jwt", "issuer and audience need auth.jwt.secret or auth.jwt.jwks_url")
	}
	if j.Leeway < 0 {
		bad("auth.jwt.leeway", "%v must not be negative", j.Leeway)
	}
	keys := map[string]string{}
	for i, k := range c.Auth.Keys {
		keys[k.Key] = fmt.Sprintf("auth.keys[%d]", i)
	}
	for i, k := range c.Auth.ServiceKeys {
		path := fmt.Sprintf("auth.service_keys[%d]", i)
		if len(k.Key) < 16 {
			bad(path+".key", "a key needs at least 16 characters (this one has %d)", len(k.Key))
		}
		if k.Name == "" {
			bad(path+".name", "empty: every service key needs the name of the backend that holds it")
		}
		if first, dup := keys[k.Key]; dup {
			bad(path+".key", "the same key as %s: each key must be different", first)
		} else {
			keys[k.Key] = path
		}
	}
}
