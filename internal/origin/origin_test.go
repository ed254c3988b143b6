package origin

import "testing"

func TestParse(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"https://app.example.com", "https://app.example.com", true},
		{"https://App.Example.COM/", "https://app.example.com", true},
		{"http://127.0.0.1:3000", "http://127.0.0.1:3000", true},
		{"http://localhost:80", "http://localhost", true},
		{"https://example.com:443", "https://example.com", true},
		{"https://example.com:8443", "https://example.com:8443", true},
		{"http://[::1]:5173", "http://[::1]:5173", true},
		{"chrome-extension://abcdef", "chrome-extension://abcdef", true},
		{"example.com", "", false},
		{"https://", "", false},
		{"https://example.com/app", "", false},
		{"https://example.com?x=1", "", false},
		{"https://example.com#top", "", false},
		{"https://user@example.com", "", false},
		{"*", "", false},
		{"", "", false},
		{"http://exa mple.com", "", false},
	} {
		got, err := Parse(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("Parse(%q) = %q, %v; want %q, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}
