package bench

import "testing"

func TestContentOf(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		data, want string
		ok         bool
	}{
		{`{"choices":[{"index":0,"delta":{"content":"t1764000000000000 hello"}}]}`, "t1764000000000000 hello", true},
		{`{"choices":[{"index":0,"delta":{"content":""}}]}`, "", true},
		{`{"choices":[{"index":0,"delta":{"role":"assistant"}}]}`, "", false},
		{`{"choices":[{"delta":{"content":"cut`, "", false},
		{`{"choices":[{"delta":{"content":"a\"b"}}]}`, "", false},
	} {
		got, ok := contentOf([]byte(tc.data))
		if ok != tc.ok || string(got) != tc.want {
			t.Errorf("contentOf(%s) = %q, %v; want %q, %v", tc.data, got, ok, tc.want, tc.ok)
		}
	}
}
