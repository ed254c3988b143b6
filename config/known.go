package config

import (
	"fmt"
	"slices"
)

// A ValidateOption tells Validate of what a Go program that embeds
// agentstream adds to the config (server.WithTools, WithToolSources,
// WithEndpoint): its agents may name them. server.New passes them; a
// program that validates a config itself passes the same.
type ValidateOption func(*known)

// known is what ValidateOptions add to the config's own names.
type known struct {
	tools, sources, endpoints []string
	// storeChecksAddr: the caller checks a non-loopback addr against the
	// store's keys (StoreMayHoldKeys).
	storeChecksAddr bool
}

// KnownTools names tools added in Go: agents may list them under tools.
// Each must be a name model APIs accept (1 to 64 letters, digits, _ or -)
// and differ from the built-in tools, the config's tools and each other.
func KnownTools(names ...string) ValidateOption {
	return func(k *known) { k.tools = append(k.tools, names...) }
}

// KnownToolSources names tool sources added in Go: agents may list them
// under mcp_servers.
func KnownToolSources(names ...string) ValidateOption {
	return func(k *known) { k.sources = append(k.sources, names...) }
}

// KnownEndpoints names model endpoints added in Go: agents may name them
// with endpoint.
func KnownEndpoints(names ...string) ValidateOption {
	return func(k *known) { k.endpoints = append(k.endpoints, names...) }
}

// StoreMayHoldKeys tells Validate that the caller itself checks an addr
// other than loopback, with no identity configured, against the keys of
// the store (agentstream keys create), which Validate cannot see:
// server.New passes it, and refuses to start when the store holds none.
func StoreMayHoldKeys() ValidateOption {
	return func(k *known) { k.storeChecksAddr = true }
}

func knownFrom(opts []ValidateOption) known {
	var k known
	for _, o := range opts {
		if o != nil {
			o(&k)
		}
	}
	return k
}

// problems reports the names added in Go that cannot work: empty, invalid
// for a model API, given twice, or (tools) named like one of taken, the
// tools the config has already. They have no place in the file: the
// program that added them is the place to fix.
func (k known) problems(taken []string) Problems {
	var ps Problems
	add := func(format string, args ...any) {
		ps = append(ps, Problem{Message: fmt.Sprintf(format, args...)})
	}
	check := func(what string, names, taken []string, needModelName bool) {
		seen := map[string]bool{}
		for _, n := range names {
			switch {
			case n == "":
				add("a %s added in Go has an empty name", what)
			case needModelName && !modelToolName(n):
				add("the %s %q added in Go: model APIs accept only 1 to 64 letters, digits, _ or - in a tool's name", what, n)
			case slices.Contains(taken, n):
				add("the %s %q added in Go is named like a tool the config already has (built in or declared): rename it", what, n)
			case seen[n]:
				add("the %s %q is added in Go twice: each needs its own name", what, n)
			}
			seen[n] = true
		}
	}
	check("tool", k.tools, taken, true)
	check("tool source", k.sources, nil, false)
	check("model endpoint", k.endpoints, nil, false)
	return ps
}

// modelToolName reports whether name is a tool name model APIs accept:
// ^[a-zA-Z0-9_-]{1,64}$.
func modelToolName(name string) bool {
	if len(name) == 0 || len(name) > 64 {
		return false
	}
	for _, c := range []byte(name) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
