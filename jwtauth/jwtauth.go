// Package jwtauth verifies JWT bearer tokens (github.com/golang-jwt/jwt/v5)
// signed with a shared HS256 secret or with the keys of a JWKS URL
// (github.com/MicahParks/keyfunc/v3), and answers the user they name.
package jwtauth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/agentstream/agentstream"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"
)

// Config is what a Verifier checks; config.JWT documents each field.
type Config struct {
	// Secret is the HS256 key; exactly one of Secret and JWKSURL is set.
	Secret string
	// JWKSURL serves the RS256/ES256 public keys.
	JWKSURL string
	// Issuer and Audience, when set, must match iss and aud.
	Issuer, Audience string
	// Leeway is the clock skew allowed on exp, nbf and iat.
	Leeway time.Duration
	// UserClaim names the claim whose string is the user id.
	UserClaim string
	// RefreshInterval is how often the JWKS is fetched anyway; a token
	// with an unknown kid also fetches it, at most once per
	// RefreshUnknownKID.
	RefreshInterval, RefreshUnknownKID time.Duration
	// Client fetches the JWKS. Default: one with a 10s timeout.
	Client *http.Client
	// OnRefreshError hears the JWKS fetches that fail. Default: ignored.
	OnRefreshError func(error)
}

// Verifier checks JWTs. Close stops its JWKS refreshes.
type Verifier struct {
	parser    *jwt.Parser
	keyfunc   func(ctx context.Context) jwt.Keyfunc
	userClaim string
	// methods are the algs accepted.
	methods []string
	cancel  context.CancelFunc
}

func (v *Verifier) accepts(alg string) bool { return slices.Contains(v.methods, alg) }

// hmacMethods and keyMethods are the algorithms each kind of key accepts:
// a token names its alg, and a secret must never verify an RS256 token
// (nor a public key an HS256 one, the classic confusion).
var (
	hmacMethods = []string{"HS256"}
	keyMethods  = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"}
)

// New returns the Verifier of c. With a JWKS URL it fetches the keys once
// before returning; a server that cannot fetch them starts anyway (the
// error goes to OnRefreshError) and refuses tokens until a fetch succeeds.
func New(c Config) (*Verifier, error) {
	if (c.Secret == "") == (c.JWKSURL == "") {
		return nil, errors.New("jwtauth: set exactly one of Secret and JWKSURL")
	}
	if c.UserClaim == "" {
		c.UserClaim = "sub"
	}
	opts := []jwt.ParserOption{jwt.WithExpirationRequired(), jwt.WithLeeway(c.Leeway), jwt.WithIssuedAt()}
	if c.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(c.Issuer))
	}
	if c.Audience != "" {
		opts = append(opts, jwt.WithAudience(c.Audience))
	}
	v := &Verifier{userClaim: c.UserClaim, cancel: func() {}}
	if c.Secret != "" {
		key := []byte(c.Secret)
		v.methods = hmacMethods
		v.parser = jwt.NewParser(append(opts, jwt.WithValidMethods(hmacMethods))...)
		v.keyfunc = func(context.Context) jwt.Keyfunc {
			return func(*jwt.Token) (any, error) { return key, nil }
		}
		return v, nil
	}
	if c.Client == nil {
		c.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if c.RefreshInterval <= 0 {
		c.RefreshInterval = time.Hour
	}
	if c.RefreshUnknownKID <= 0 {
		c.RefreshUnknownKID = 10 * time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	noErr := true
	unknownKID := rate.NewLimiter(rate.Every(c.RefreshUnknownKID), 1)
	fetchMax := c.Client.Timeout
	if fetchMax <= 0 {
		fetchMax = 10 * time.Second
	}
	kf, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{c.JWKSURL}, keyfunc.Override{
		Client:                    c.Client,
		HTTPTimeout:               c.Client.Timeout,
		NoErrorReturnFirstHTTPReq: &noErr,
		RefreshInterval:           c.RefreshInterval,
		RefreshUnknownKID:         unknownKID,
		// jwkset bounds the wait for the limiter and the fetch that follows
		// with this one timeout: it must leave the fetch its time (a
		// millisecond here once made every unknown-kid fetch fail on a
		// busy machine, and on any real network).
		RateLimitWaitMax: fetchMax,
		RefreshErrorHandlerFunc: func(string) func(context.Context, error) {
			return func(_ context.Context, err error) {
				if c.OnRefreshError != nil && ctx.Err() == nil {
					c.OnRefreshError(err)
				}
			}
		},
	})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("jwtauth: the JWKS at %s: %w", c.JWKSURL, err)
	}
	v.methods = keyMethods
	v.parser = jwt.NewParser(append(opts, jwt.WithValidMethods(keyMethods))...)
	v.keyfunc = func(ctx context.Context) jwt.Keyfunc {
		if unknownKID.Tokens() < 1 {
			// A fetch was made lately: a token whose kid the cached set
			// lacks is refused at once, rather than waiting for the next
			// fetch, so a caller sending made-up kids holds no request. A
			// known kid is read from the cache, which needs no context.
			done, stop := context.WithCancel(ctx)
			stop()
			ctx = done
		}
		return kf.KeyfuncCtx(ctx)
	}
	v.cancel = cancel
	return v, nil
}

// Close stops the JWKS refreshes.
func (v *Verifier) Close() { v.cancel() }

// LooksLikeJWT reports whether token has a JWT's shape (three base64url
// parts, the first a JSON object), so that a bearer credential goes to
// the JWT check and not the API keys.
func LooksLikeJWT(token string) bool {
	return strings.Count(token, ".") == 2 && strings.HasPrefix(token, "eyJ")
}

// Verify returns the user the token names. Every failure is an
// *agentstream.Error of CodeUnauthorized that says which check failed,
// never anything of the token or the key.
func (v *Verifier) Verify(ctx context.Context, token string) (string, error) {
	claims := jwt.MapClaims{}
	tok, err := v.parser.ParseWithClaims(token, claims, v.keyfunc(ctx))
	if err != nil {
		return "", v.refused(tok, claims, err)
	}
	user, ok := claims[v.userClaim].(string)
	if !ok || user == "" {
		return "", agentstream.Errorf(agentstream.CodeUnauthorized, "the JWT has no %q claim naming the user (a non-empty string)", v.userClaim)
	}
	return user, nil
}

// maxAlgShown bounds the alg a refusal quotes.
const maxAlgShown = 16

// refused names the check that token failed with err. The token and
// claims (decoded before the checks) tell which alg or claim it was.
func (v *Verifier) refused(tok *jwt.Token, claims jwt.MapClaims, err error) error {
	why := "is not valid"
	alg := ""
	if tok != nil {
		alg, _ = tok.Header["alg"].(string)
	}
	// The alg is the client's text, quoted back: no longer than a real
	// one (PS512) needs, so a client cannot make the answer huge.
	if len(alg) > maxAlgShown {
		alg = strings.ToValidUTF8(alg[:maxAlgShown], "") + "…"
	}
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		why = "is not a well-formed JWT"
	case errors.Is(err, jwkset.ErrKeyNotFound):
		why = "is signed by a key (kid) the JWKS does not have"
	case errors.Is(err, keyfunc.ErrKeyfunc):
		why = "names no key the JWKS has (kid), or the JWKS could not be fetched"
	case errors.Is(err, jwt.ErrTokenUnverifiable), errors.Is(err, jwt.ErrTokenSignatureInvalid) && !v.accepts(alg):
		why = fmt.Sprintf("cannot be verified: its alg %q is not accepted (%s)", alg, strings.Join(v.methods, ", "))
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		why = "has an invalid signature"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing) && claims["exp"] == nil:
		why = "has no exp: tokens must expire"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing) && claims["aud"] == nil:
		why = "has no aud: it is not for this server (aud)"
	case errors.Is(err, jwt.ErrTokenExpired):
		why = "has expired"
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		why = "is not valid yet (nbf or iat in the future)"
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		why = "is not for this server (aud)"
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		why = "is from another issuer (iss)"
	}
	return agentstream.Errorf(agentstream.CodeUnauthorized, "the JWT %s", why)
}
