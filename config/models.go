package config

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
)

// ModelEndpoint is one OpenAI-compatible chat completions endpoint an
// agent can pick with endpoint: (a local Ollama, OpenAI, vLLM, …). Agents
// without an endpoint use the openai: block (or the simulated model).
type ModelEndpoint struct {
	// Name is what agents call it (endpoint: NAME). Required, unique.
	Name string `yaml:"name"`
	// BaseURL is the API root "chat/completions" is appended to, for
	// example http://127.0.0.1:11434/v1 (Ollama) or
	// https://api.openai.com/v1. Required. May hold ${NAME}, read from
	// the environment.
	BaseURL string `yaml:"base_url" expand:"plain"`
	// APIKey is sent as "Authorization: Bearer <api_key>". Default empty:
	// no Authorization header (Ollama, a local vLLM need none). May be
	// written ${NAME}, read from the environment; a secret, never logged
	// or shown by the API.
	APIKey string `yaml:"api_key" expand:"key"`
	// MaxRetries of 429/5xx/connection failures before the first token.
	// Default 2; 0 means no retries.
	MaxRetries *int `yaml:"max_retries"`
	// IdleTimeout fails a call whose stream is silent this long.
	// Default 60s.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// H2C speaks HTTP/2 without TLS to an http:// base_url known to
	// accept it (agentstream sim does). Default false.
	H2C bool `yaml:"h2c"`
}

// modelsWithDefaults returns a copy of ms with the unset options set to
// their defaults (those of the openai: block); the caller's slice is not
// modified, as WithDefaults promises.
func modelsWithDefaults(ms []ModelEndpoint) []ModelEndpoint {
	if ms == nil {
		return nil
	}
	out := make([]ModelEndpoint, len(ms))
	for i, m := range ms {
		if m.MaxRetries == nil {
			n := 2
			m.MaxRetries = &n
		}
		def(&m.IdleTimeout, 60*time.Second)
		out[i] = m
	}
	return out
}

// Endpoint returns the model endpoint of that name.
func (c Config) Endpoint(name string) (ModelEndpoint, bool) {
	for _, m := range c.Models {
		if m.Name == name {
			return m, true
		}
	}
	return ModelEndpoint{}, false
}

// validateModels reports the problems of the models: section, and of the
// agents' endpoint: keys, through bad; added are the endpoints a Go
// program adds (server.WithEndpoint), which agents may name too.
func (c Config) validateModels(bad func(path, format string, args ...any), added []string) {
	seen := map[string]string{}
	var names []string
	for _, n := range added {
		seen[n] = "added in Go"
		names = append(names, n)
	}
	for i, m := range c.Models {
		path := fmt.Sprintf("models[%d]", i)
		if declareName(bad, path, "model endpoint", m.Name, "which agents give as endpoint:", seen) {
			names = append(names, m.Name)
		}
		if m.BaseURL == "" {
			bad(path+".base_url", "empty: every model endpoint needs the URL of its API, e.g. http://127.0.0.1:11434/v1 (Ollama) or https://api.openai.com/v1")
		} else if msg := checkBaseURL(m.BaseURL); msg != "" {
			bad(path+".base_url", "%s", msg)
		}
		if m.MaxRetries != nil && *m.MaxRetries < 0 {
			bad(path+".max_retries", "%d must not be negative (0 means no retries)", *m.MaxRetries)
		}
		if m.IdleTimeout < 0 {
			bad(path+".idle_timeout", "%v must not be negative", m.IdleTimeout)
		}
	}

	builtins := 0
	if c.src != nil {
		builtins = max(len(c.Agents)-c.src.agents, 0)
	}
	for i, a := range c.Agents {
		if a.Endpoint == "" || i < builtins {
			continue
		}
		path := fmt.Sprintf("agents[%d]", i-builtins)
		if _, ok := seen[a.Endpoint]; !ok {
			hint := "no model endpoints are declared: add it under models:, or remove endpoint: to use the openai: block"
			if len(names) > 0 {
				hint = "the model endpoints are " + strings.Join(names, ", ")
			}
			if s := closest(a.Endpoint, names); s != "" {
				hint = "did you mean " + s + "?"
			}
			bad(path+".endpoint", "unknown model endpoint %q; %s", a.Endpoint, hint)
		}
		if a.Model == "" && !slices.Contains(added, a.Endpoint) {
			// The default model (the top-level model:) is the openai:
			// block's; another endpoint would be asked for a model it may
			// not have. (A Model a Go program adds chooses for itself.)
			bad(path+".model", "empty: an agent with an endpoint names its model there, e.g. model: llama3.1")
		}
	}
}

// declareName checks the name of an entry declared at path, a kind
// (what the entry is) that others refer to by name: not empty (use says
// how it is referred to), not declared before (seen maps the names
// declared to where), without spaces or slashes. It records a good name
// in seen and reports whether it was one.
func declareName(bad func(path, format string, args ...any), path, kind, name, use string, seen map[string]string) bool {
	switch first, dup := seen[name]; {
	case name == "":
		bad(path+".name", "empty: every %s needs a name, %s", kind, use)
	case dup:
		bad(path+".name", "%s %q is declared twice (also %s): rename or remove one", kind, name, first)
	case strings.ContainsAny(name, " /"):
		bad(path+".name", "%q may not contain spaces or slashes", name)
	default:
		seen[name] = path
		return true
	}
	return false
}

// checkBaseURL says what is wrong with an endpoint's base URL, or "".
func checkBaseURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		// Not shown: the value may hold a credential.
		return "not a URL: write the API's root, e.g. http://127.0.0.1:11434/v1"
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Sprintf("%q is not an http:// or https:// URL with a host, e.g. http://127.0.0.1:11434/v1", ShowURL(s))
	}
	return ""
}

// ShowURL is a URL as logs and messages may show it: without its user
// information or query, which may hold credentials.
func ShowURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(an unparsable URL)"
	}
	hidden := u.User != nil || u.RawQuery != ""
	u.User, u.RawQuery, u.Fragment, u.RawFragment = nil, "", "", ""
	if hidden {
		return u.String() + " (credentials hidden)"
	}
	return u.String()
}
