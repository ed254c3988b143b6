package httpapi

import (
	"net/http"
	"slices"
	"strings"

	"github.com/agentstream/agentstream/internal/origin"
)

// CORS lets pages of other origins call the API from a browser.
type CORS struct {
	// AllowedOrigins are the origins (scheme://host[:port]) whose pages
	// may call the API, or "*" for any. Empty: CORS is off, and browsers
	// keep other origins' pages out. An origin that does not parse is
	// left out (config.Validate refuses it first).
	AllowedOrigins []string
	// AllowedHeaders are request headers pages may send beside
	// DefaultCORSHeaders.
	AllowedHeaders []string
}

// DefaultCORSHeaders are the request headers a page may always send: its
// credential, JSON bodies, resuming, and the headers of the clients
// agentstream speaks to (the OpenAI SDK's, the AI SDK's, AG-UI's).
var DefaultCORSHeaders = []string{"Authorization", "Content-Type", "Last-Event-ID", "Accept", "X-Thread-Id"}

// corsExposed are the response headers a page's script may read.
const corsExposed = "X-Run-Id, X-Thread-Id, Retry-After"

// corsMethods are the methods a preflight may ask for.
const corsMethods = "GET, HEAD, POST, PATCH, DELETE"

// corsMaxAge is how long (seconds) a browser may keep a preflight's
// answer: 10 minutes, Chromium's cap being 2 hours.
const corsMaxAge = "600"

type cors struct {
	any     bool
	origins map[string]bool
	headers string
}

// newCORS returns the CORS of c, nil when it is off.
func newCORS(c CORS) *cors {
	if len(c.AllowedOrigins) == 0 {
		return nil
	}
	x := &cors{origins: map[string]bool{}}
	for _, o := range c.AllowedOrigins {
		if o == "*" {
			x.any = true
			continue
		}
		if n, err := origin.Parse(o); err == nil {
			x.origins[n] = true
		}
	}
	headers := slices.Clone(DefaultCORSHeaders)
	for _, h := range c.AllowedHeaders {
		if !slices.ContainsFunc(headers, func(d string) bool { return strings.EqualFold(d, h) }) {
			headers = append(headers, h)
		}
	}
	x.headers = strings.Join(headers, ", ")
	return x
}

// allowed returns the Access-Control-Allow-Origin of a request from o, or
// "" when o may not call.
func (c *cors) allowed(o string) string {
	switch {
	case o == "":
		return ""
	case c.any:
		return "*"
	case c.origins[strings.ToLower(o)]:
		return o
	}
	return ""
}

// wrap answers the preflights of allowed origins itself, before
// authentication (browsers send them without credentials), and marks
// the other answers to them readable. Requests from other origins get no
// CORS header: their browsers keep the answers from their pages. No
// credentials mode: the API reads no cookie, so a page sends its key in
// Authorization and needs no Access-Control-Allow-Credentials.
func (c *cors) wrap(next http.Handler) http.Handler {
	if c == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		// The answer depends on Origin, so caches must not share it.
		h.Add("Vary", "Origin")
		allow := c.allowed(r.Header.Get("Origin"))
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			h.Add("Vary", "Access-Control-Request-Method")
			h.Add("Vary", "Access-Control-Request-Headers")
			if allow != "" {
				h.Set("Access-Control-Allow-Origin", allow)
				h.Set("Access-Control-Allow-Methods", corsMethods)
				h.Set("Access-Control-Allow-Headers", c.headers)
				h.Set("Access-Control-Max-Age", corsMaxAge)
				w.WriteHeader(http.StatusNoContent)
				return
			}
			// An unknown origin's preflight is an OPTIONS request like
			// any other (405), with nothing that lets it through.
		}
		if allow != "" {
			h.Set("Access-Control-Allow-Origin", allow)
			h.Set("Access-Control-Expose-Headers", corsExposed)
		}
		next.ServeHTTP(w, r)
	})
}
