package jsonstr

import (
	"bytes"
	"encoding/json"
	"testing"
)

// cases take every path of Append.
var cases = []string{
	"", "Hello", " world", `say "hi"`, `back\slash`, "tab\tnew\nline\rcr",
	"\b\f\x00\x01\x1f\x7f", "<script>&amp;</script>", "é 😀 日本",
	"\u2028\u2029", "bad \xff utf8 \xc3", "\xe2\x80", "x\xed\xa0\x80y",
}

// want is encoding/json's encoding of s.
func want(t testing.TB, s string, escapeHTML bool) []byte {
	t.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(escapeHTML)
	if err := enc.Encode(s); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

func check(t testing.TB, s string) {
	t.Helper()
	for _, html := range []bool{true, false} {
		if got, w := Append([]byte("x"), s, html), append([]byte("x"), want(t, s, html)...); !bytes.Equal(got, w) {
			t.Errorf("Append(%q, escapeHTML %v) = %s, want %s", s, html, got, w)
		}
	}
}

func TestAppend(t *testing.T) {
	t.Parallel()
	for _, s := range cases {
		check(t, s)
	}
}

func FuzzAppend(f *testing.F) {
	for _, s := range cases {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { check(t, s) })
}

// FuzzUnquote: Unquote decodes a JSON string's body as encoding/json
// does, and refuses what encoding/json refuses.
func FuzzUnquote(f *testing.F) {
	for _, s := range []string{`plain`, `a\"b\\c\/d\b\f\n\r\t`, `\u00e9\ud83d\ude00`, `\ud800 alone`, `\ud800\u0041`, "bad \xff utf8", `\x`, `\u12`, "raw\ncontrol"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		got, ok := Unquote(nil, body)
		var want string
		err := json.Unmarshal(append(append([]byte{'"'}, body...), '"'), &want)
		if _, _, closed := Body(body); closed {
			return // an unescaped quote inside: not a string's body
		}
		if ok != (err == nil) {
			t.Fatalf("Unquote(%q) ok=%v, encoding/json: %v", body, ok, err)
		}
		if ok && string(got) != want {
			t.Fatalf("Unquote(%q) = %q, encoding/json %q", body, got, want)
		}
	})
}
