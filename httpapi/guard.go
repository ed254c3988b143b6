package httpapi

import (
	"mime"
	"net"
	"net/http"
	"strings"

	"github.com/agentstream/agentstream"
)

// CodeUnsupportedMediaType is the error of a request whose body is not
// declared JSON (415). The HTTP layer's own.
const CodeUnsupportedMediaType agentstream.Code = "unsupported_media_type"

// CodeMisdirected is the error of a request, to a server with no identity
// configured, whose Host is not a loopback name (421). The HTTP layer's own.
const CodeMisdirected agentstream.Code = "misdirected_request"

// maxJSONDepth bounds how deeply a request body's arrays and objects nest:
// no request needs more, and a deeper one only costs the decoder.
const maxJSONDepth = 64

// checkContentType refuses a POST or PATCH that declares a body other
// than JSON. A browser sends a cross-site request without asking first
// (no CORS preflight) only when its type is a form
// (application/x-www-form-urlencoded, multipart/form-data) or text/plain:
// refusing those keeps another site's page from starting, cancelling or
// changing anything, even on a server with no keys. A request with no
// Content-Type at all is accepted: a browser never sends a body without
// one, and scripts and backends often leave it out.
func checkContentType(r *http.Request) error {
	if r.Method != http.MethodPost && r.Method != http.MethodPatch {
		return nil
	}
	ct := r.Header.Get("Content-Type")
	if ct == "" && len(r.Header.Values("Content-Type")) == 0 {
		return nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err == nil && mt == "application/json" {
		return nil
	}
	return agentstream.Errorf(CodeUnsupportedMediaType,
		"the request body must be JSON, sent with Content-Type: application/json, not %q (curl -d needs -H 'Content-Type: application/json')", ct)
}

// checkLocalHost refuses a request whose Host is not a loopback name or
// address, on a server with no identity configured, where every caller
// is LocalUser. A page of another site whose name was made to resolve to
// 127.0.0.1 (DNS rebinding) reaches the server as that site's name: it
// is turned away, since it would otherwise be the local user.
func checkLocalHost(r *http.Request) error {
	if loopbackHost(r.Host) {
		return nil
	}
	return agentstream.Errorf(CodeMisdirected,
		"host %q is not served: with no keys configured agentstream answers only localhost, 127.0.0.1 and [::1] (configure auth to serve other names)", r.Host)
}

// loopbackHost reports whether host (a Host header, with or without a
// port) names this machine: localhost or a loopback address.
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	} else if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1]
	}
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkJSONDepth returns a CodeInvalidRequest error when data, a JSON
// text, nests arrays and objects deeper than maxJSONDepth. It only counts
// brackets outside strings: the decoder reports any other problem.
func checkJSONDepth(data []byte) error {
	depth, inString := 0, false
	for i := 0; i < len(data); i++ {
		c := data[i]
		if inString {
			switch c {
			case '\\':
				i++
			case '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '{', '[':
			depth++
			if depth > maxJSONDepth {
				return agentstream.Errorf(agentstream.CodeInvalidRequest,
					"the request body nests arrays and objects more than %d levels deep", maxJSONDepth)
			}
		case '}', ']':
			depth--
		}
	}
	return nil
}

// localHostGuard is the Authenticator that checks the Host of a request
// its inner Authenticator answers as the local user (no identity
// configured): whatever the Authenticator, the local user is served on
// loopback names only.
type localHostGuard struct{ Authenticator }

// Authenticate implements Authenticator.
func (g localHostGuard) Authenticate(r *http.Request) (Identity, error) {
	id, err := g.Authenticator.Authenticate(r)
	if err == nil && id.Via == ViaLocal {
		if err := checkLocalHost(r); err != nil {
			return Identity{}, err
		}
	}
	return id, err
}
