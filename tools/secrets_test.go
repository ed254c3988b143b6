package tools

import "testing"

func TestSecretsMask(t *testing.T) {
	t.Parallel()
	s := NewSecrets("tok-123456", "tok-123456-long", "abc", "", `p"a\ss<>&word`)
	for _, tt := range []struct{ in, want string }{
		{"nothing here", "nothing here"},
		{"Bearer tok-123456", "Bearer [redacted]"},
		{"tok-123456tok-123456", "[redacted][redacted]"},
		// The longer secret is masked whole, not as the shorter plus a tail.
		{"key=tok-123456-long;", "key=[redacted];"},
		// Too short to mask without garbling answers.
		{"abc", "abc"},
		{`{"h":"p\"a\\ss\u003c\u003e\u0026word"}`, `{"h":"[redacted]"}`},
		{`{"h":"p\"a\\ss<>&word"}`, `{"h":"[redacted]"}`},
		{`raw p"a\ss<>&word`, `raw [redacted]`},
	} {
		if got := s.Mask(tt.in); got != tt.want {
			t.Errorf("Mask(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	var none *Secrets
	if none.Mask("tok-123456") != "tok-123456" || NewSecrets().Mask("x") != "x" || NewSecrets("ab").Mask("ab") != "ab" {
		t.Fatal("an empty masker changed text")
	}
}
