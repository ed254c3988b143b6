package httpapi

import (
	"context"
	"crypto/sha256"
	"net/http"
	"unicode"
	"unicode/utf8"

	"github.com/agentstream/agentstream"
)

// The ways of Identities beside the key authenticator's.
const (
	ViaJWT        = "jwt"         // Authorization: Bearer <a JWT that auth.jwt verifies>
	ViaServiceKey = "service_key" // a service key, with the user in UserHeader
)

// UserHeader names the end user of a request sent with a service key.
const UserHeader = "X-Agentstream-User"

// maxUserID bounds a user id from UserHeader.
const maxUserID = 256

// TokenVerifier checks a JWT and answers the user it names
// (jwtauth.Verifier). Its errors are CodeUnauthorized.
type TokenVerifier interface {
	Verify(ctx context.Context, token string) (string, error)
}

// Identities authenticates every kind of credential: a bearer credential
// that is a service key acts for the user named in UserHeader; one that
// is an API key, of the config or of the store (WithKeyStore), is its
// user; any other that looks like a JWT goes to JWT (when set). A user id
// is the same string whichever way it came. UserHeader with any
// credential but a service key is refused, so that a caller never
// believes it acts for a user it does not (with no credential too). With
// nothing configured and no key in the store every caller is LocalUser.
type Identities struct {
	keys     *KeyAuthenticator
	services map[[32]byte]string
	jwt      TokenVerifier
	// looksJWT tells a JWT from an API key by its shape.
	looksJWT func(string) bool
	// stored are the keys of the store (WithKeyStore); nil for none.
	stored *storedKeys
}

// NewIdentities returns the Authenticator of API keys (key → user),
// service keys (key → the name of the backend holding it) and, when jwt is not
// nil, JWTs: a credential that is no key goes to jwt when looksJWT says
// it has a JWT's shape (or looksJWT is nil), else it is an unknown key.
func NewIdentities(keys, serviceKeys map[string]string, jwt TokenVerifier, looksJWT func(string) bool) *Identities {
	a := &Identities{keys: NewKeyAuthenticator(keys), services: make(map[[32]byte]string, len(serviceKeys)), jwt: jwt, looksJWT: looksJWT}
	for k, name := range serviceKeys {
		a.services[sha256.Sum256([]byte(k))] = name
	}
	return a
}

// Authenticate implements Authenticator.
func (a *Identities) Authenticate(r *http.Request) (Identity, error) {
	local, err := a.local(r.Context())
	if err != nil {
		return Identity{}, err
	}
	if local {
		// A key created a moment ago is its user at once, before the
		// cached "no key in the store" runs out.
		if token, ok := bearer(r.Header.Get("Authorization")); ok && a.stored != nil && looksStored(token) && len(r.Header.Values(UserHeader)) == 0 {
			user, err := a.stored.user(r.Context(), token)
			if err != nil {
				return Identity{}, err
			}
			return Identity{UserID: user, Via: ViaAPIKey}, nil
		}
		if len(r.Header.Values(UserHeader)) > 0 {
			return Identity{}, agentstream.Errorf(agentstream.CodeUnauthorized, "%s is accepted only with a service key (auth.service_keys)", UserHeader)
		}
		return Identity{UserID: LocalUser, Via: ViaLocal}, nil
	}
	token, ok := bearer(r.Header.Get("Authorization"))
	if !ok {
		what := "key"
		if a.jwt != nil {
			what = "key or JWT"
		}
		return Identity{}, agentstream.Errorf(agentstream.CodeUnauthorized, "missing credential: send Authorization: Bearer <%s>", what)
	}
	named := r.Header.Values(UserHeader)
	if _, ok := a.services[sha256.Sum256([]byte(token))]; ok {
		if len(named) == 0 || named[0] == "" {
			return Identity{}, agentstream.Errorf(agentstream.CodeUnauthorized, "a service key must name the end user in %s", UserHeader)
		}
		if len(named) > 1 || !validUserID(named[0]) {
			return Identity{}, agentstream.Errorf(agentstream.CodeUnauthorized, "%s must be one user id: 1 to %d printable characters", UserHeader, maxUserID)
		}
		return Identity{UserID: named[0], Via: ViaServiceKey}, nil
	}
	if len(named) > 0 {
		return Identity{}, agentstream.Errorf(agentstream.CodeUnauthorized, "%s is accepted only with a service key (auth.service_keys)", UserHeader)
	}
	if user, ok := a.keys.keys[sha256.Sum256([]byte(token))]; ok {
		return Identity{UserID: user, Via: ViaAPIKey}, nil
	}
	if a.stored != nil && looksStored(token) {
		user, err := a.stored.user(r.Context(), token)
		if err != nil {
			return Identity{}, err
		}
		return Identity{UserID: user, Via: ViaAPIKey}, nil
	}
	jwtShaped := a.looksJWT == nil || a.looksJWT(token)
	if a.jwt != nil && jwtShaped {
		user, err := a.jwt.Verify(r.Context(), token)
		if err != nil {
			return Identity{}, err
		}
		return Identity{UserID: user, Via: ViaJWT}, nil
	}
	if a.jwt == nil && a.looksJWT != nil && jwtShaped {
		return Identity{}, agentstream.Errorf(agentstream.CodeUnauthorized, "JWTs are not accepted: auth.jwt is not configured")
	}
	return Identity{}, agentstream.Errorf(agentstream.CodeUnauthorized, "the API key is not valid")
}

// validUserID: a user id from a header is printable UTF-8 of bounded
// length, so that it is safe in logs and stores.
func validUserID(s string) bool {
	if s == "" || len(s) > maxUserID || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}
