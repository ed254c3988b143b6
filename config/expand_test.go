package config

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// env is a lookup of the given variables.
func env(vars map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		v, ok := vars[name]
		return v, ok
	}
}

func TestExpandString(t *testing.T) {
	t.Parallel()
	lookup := env(map[string]string{"TOKEN": "tok-123456", "EMPTY": "", "HOST": "shop.example"})
	tests := []struct {
		in, want string
		found    []string
		errs     []string
	}{
		{"plain", "plain", nil, nil},
		{"Bearer ${TOKEN}", "Bearer tok-123456", []string{"tok-123456"}, nil},
		{"https://${HOST}/x?k=${TOKEN}", "https://shop.example/x?k=tok-123456", []string{"shop.example", "tok-123456"}, nil},
		{"${EMPTY}", "", []string{""}, nil},
		{"${EMPTY:-fallback}", "fallback", nil, nil},
		{"${UNSET:-}", "", nil, nil},
		{"${UNSET:-a:-b}", "a:-b", nil, nil},
		{"${TOKEN:-x}", "tok-123456", []string{"tok-123456"}, nil},
		{"$${TOKEN}", "${TOKEN}", nil, nil},
		{"a$$b", "a$b", nil, nil},
		{"pa$word $TOKEN $", "pa$word $TOKEN $", nil, nil},
		{"${UNSET}", "${UNSET}", nil, []string{"${UNSET} is not set in the environment: set UNSET"}},
		{"x ${UNSET} ${ALSO_UNSET}", "x ${UNSET} ${ALSO_UNSET}", nil, []string{"${UNSET} is not set", "${ALSO_UNSET} is not set"}},
		{"${1X}", "${1X}", nil, []string{"${1X} does not name a variable"}},
		{"${}", "${}", nil, []string{"${} does not name a variable"}},
		{"${TO KEN}", "${TO KEN}", nil, []string{"does not name a variable"}},
		{"Bearer ${TOKEN", "Bearer ${TOKEN", nil, []string{"a ${ without its closing }"}},
	}
	for _, tt := range tests {
		got, found, errs := expandString(tt.in, lookup)
		if got != tt.want || !slices.Equal(found, tt.found) || len(errs) != len(tt.errs) {
			t.Errorf("expandString(%q) = %q, %q, %q; want %q, %q, %d errors", tt.in, got, found, errs, tt.want, tt.found, len(tt.errs))
			continue
		}
		for i, e := range tt.errs {
			if !strings.Contains(errs[i], e) {
				t.Errorf("expandString(%q) error %d: %q, want %q", tt.in, i, errs[i], e)
			}
		}
	}
}

// TestLoadExpands: ${NAME} is expanded in the tagged settings only, the
// variables that secret settings read are secrets, and an unset variable
// is a problem at its line.
func TestLoadExpands(t *testing.T) {
	t.Parallel()
	vars := env(map[string]string{
		"OPENAI_KEY": "sk-from-env-1", "OLLAMA": "http://127.0.0.1:11434/v1", "SHOP_TOKEN": "shop-token-99",
		"SHOP_HOST": "shop.example", "CLIENT_KEY": "client-key-0123456789", "NOTE": "note-from-env",
	})
	file := `openai:
  api_key: ${OPENAI_KEY}
  base_url: ${OLLAMA}
auth:
  keys:
    - key: ${CLIENT_KEY}
      user: ${NOTE}
tools:
  - name: lookup_order
    description: Costs $${PRICE}, see ${NOTE}
    http:
      url: https://${SHOP_HOST}/orders?currency=$$
      headers:
        Authorization: Bearer ${SHOP_TOKEN}
        X-Literal: $${SHOP_TOKEN}
        X-Plain: fixed
agents:
  - name: helper
    instructions: "Quote ${NOTE} as written"
    tools: [lookup_order]
`
	c, err := LoadEnv("c.yaml", []byte(file), vars)
	if err != nil {
		t.Fatalf("LoadEnv: %v", err)
	}
	h := c.Tools[0].HTTP
	for _, tt := range []struct{ got, want string }{
		{c.OpenAI.APIKey, "sk-from-env-1"},
		{c.OpenAI.BaseURL, "http://127.0.0.1:11434/v1"},
		{c.Auth.Keys[0].Key, "client-key-0123456789"},
		{c.Auth.Keys[0].User, "${NOTE}"},
		{c.Tools[0].Description, "Costs $${PRICE}, see ${NOTE}"},
		{h.URL, "https://shop.example/orders?currency=$"},
		{h.Headers["Authorization"], "Bearer shop-token-99"},
		{h.Headers["X-Literal"], "${SHOP_TOKEN}"},
		{h.Headers["X-Plain"], "fixed"},
		{c.Agents[0].Instructions, "Quote ${NOTE} as written"},
	} {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
	// API keys are secrets however written; a header's secret is what its
	// variable brought; a URL's variables are not secrets.
	want := []string{"client-key-0123456789", "shop-token-99", "sk-from-env-1"}
	if got := c.WithDefaults().Secrets(); !slices.Equal(got, want) {
		t.Fatalf("Secrets() = %q, want %q", got, want)
	}
	// An override's value is taken as it is, and an API key set by one
	// is a secret too.
	c, err = LoadEnv("c.yaml", []byte("openai:\n  api_key: ${OPENAI_KEY}\n"), vars,
		Override{Key: "openai.api_key", Value: "sk-${OVERRIDE}", Origin: "env OPENAI_API_KEY"})
	if err != nil || c.OpenAI.APIKey != "sk-${OVERRIDE}" || !slices.Contains(c.Secrets(), "sk-${OVERRIDE}") {
		t.Fatalf("override: %q, %q, %v", c.OpenAI.APIKey, c.Secrets(), err)
	}
}

func TestLoadUnsetVariables(t *testing.T) {
	t.Parallel()
	file := `openai:
  api_key: ${MISSING_KEY}
tools:
  - name: lookup_order
    http:
      url: ${SHOP_URL}/orders
      headers:
        X-Shop: demo
        Authorization: "Bearer ${SHOP_TOKEN}"
        X-Bad: ${9LIVES}
agents:
  - name: helper
    instructions: "${NOT_EXPANDED}"
`
	_, err := LoadEnv("c.yaml", []byte(file), env(nil))
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("error %v, want Problems", err)
	}
	want := []struct {
		line int
		path string
		text string
	}{
		{2, "openai.api_key", "${MISSING_KEY} is not set in the environment"},
		{6, "tools[0].http.url", "${SHOP_URL} is not set"},
		{9, "tools[0].http.headers.Authorization", "${SHOP_TOKEN} is not set"},
		{10, "tools[0].http.headers.X-Bad", "${9LIVES} does not name a variable"},
	}
	if len(ps) != len(want) {
		t.Fatalf("%d problems, want %d (the URL's is not reported twice):\n%v", len(ps), len(want), err)
	}
	for i, w := range want {
		if p := ps[i]; p.Line != w.line || p.Path != w.path || !strings.Contains(p.Message, w.text) {
			t.Errorf("problem %d: %+v, want line %d, %s: %s", i, p, w.line, w.path, w.text)
		}
	}
	// Decode reads the file as written.
	c, err := Decode([]byte(file))
	if err != nil || c.OpenAI.APIKey != "${MISSING_KEY}" {
		t.Fatalf("Decode: %q, %v", c.OpenAI.APIKey, err)
	}
}
