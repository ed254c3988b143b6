package tools

import (
	"encoding/json"
	"slices"
	"strings"
)

// Redacted replaces a secret in what a tool answered.
const Redacted = "[redacted]"

// MinSecretLen is the length below which a secret is not masked: masking
// every "42" or "dev" in every answer would garble answers, and so short a
// value protects nothing.
const MinSecretLen = 6

// Secrets masks configured secrets (API keys, header values that came from
// ${VAR}) in text that tools answered, before it reaches the model, the
// stream or the store: a tool that echoes the Authorization header it got
// does not hand the token to the model. The zero value and nil mask
// nothing.
type Secrets struct {
	r *strings.Replacer
}

// NewSecrets returns a masker of values; those shorter than MinSecretLen
// are left out. Each value is also masked as it appears inside a JSON
// string (with its quotes, backslashes and control characters escaped),
// the form an echoing JSON API answers with.
func NewSecrets(values ...string) *Secrets {
	var forms []string
	for _, v := range values {
		if len(v) < MinSecretLen {
			continue
		}
		forms = append(forms, v, jsonForm(v, true), jsonForm(v, false))
	}
	if len(forms) == 0 {
		return &Secrets{}
	}
	// Longest first: strings.Replacer tries its pairs in order at each
	// position, so a secret holding another is masked whole.
	slices.SortFunc(forms, func(a, b string) int {
		if len(a) != len(b) {
			return len(b) - len(a)
		}
		return strings.Compare(a, b)
	})
	forms = slices.Compact(forms)
	pairs := make([]string, 0, 2*len(forms))
	for _, f := range forms {
		pairs = append(pairs, f, Redacted)
	}
	return &Secrets{r: strings.NewReplacer(pairs...)}
}

// Mask returns s with every secret replaced by Redacted.
func (s *Secrets) Mask(text string) string {
	if s == nil || s.r == nil {
		return text
	}
	return s.r.Replace(text)
}

// jsonForm is v as it appears between the quotes of a JSON string, as
// encoding/json writes it, with or without escaping <, > and &.
func jsonForm(v string, escapeHTML bool) string {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(escapeHTML)
	_ = enc.Encode(v) // a string always encodes
	s := strings.TrimSuffix(b.String(), "\n")
	return s[1 : len(s)-1]
}
