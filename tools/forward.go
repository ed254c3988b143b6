package tools

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/agentstream/agentstream"
)

// Forward says which facts of the run a tool's server is told, as request
// headers, so that it acts for the right user: the run's user id, and
// chosen keys of the run's context.
type Forward struct {
	// UserHeader, when set, carries the run's user id.
	UserHeader string
	// ContextHeaders maps context keys to the header that carries each; a
	// key the run's context lacks sends no header.
	ContextHeaders map[string]string
}

// Apply sets the headers f names from the RunInfo in ctx (none outside a
// run). A string value is sent as it is; any other value (a number, a
// boolean, a list, an object) as its JSON text, and so is a string that a
// header cannot carry as it is (one with a line break or another control
// character).
func (f Forward) Apply(ctx context.Context, h http.Header) {
	ri, ok := agentstream.RunInfoFrom(ctx)
	if !ok {
		return
	}
	if f.UserHeader != "" && ri.UserID != "" {
		h.Set(f.UserHeader, headerValue(ri.UserID))
	}
	for key, name := range f.ContextHeaders {
		v, ok := ri.Context[key]
		if !ok || v == nil {
			continue
		}
		s, isString := v.(string)
		if !isString {
			b, err := json.Marshal(v)
			if err != nil {
				continue
			}
			s = string(b)
		}
		h.Set(name, headerValue(s))
	}
}

// headerValue is s, or its JSON text when a header cannot carry s as it
// is: net/http refuses a request whose header values hold control
// characters.
func headerValue(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			b, _ := json.Marshal(s) // a string always marshals
			return string(b)
		}
	}
	return s
}
