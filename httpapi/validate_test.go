package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/agentstream/agentstream"
)

func TestValidClientID(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		id   string
		want bool
	}{
		{"hana-1", true},
		{"seed-thread-1", true},
		{"a", true},
		{"A.b_c:d-9", true},
		{"550e8400-e29b-41d4-a716-446655440000", true},
		{"thr_5YDKM6TMUTNIJNRO5RVTYU26ER", true},
		{"...", true},
		{strings.Repeat("x", maxClientIDBytes), true},
		{"", false},
		{".", false},
		{"..", false},
		{strings.Repeat("x", maxClientIDBytes+1), false},
		{strings.Repeat("x", 3000), false},
		{"hana 1", false},
		{"../etc", false},
		{"a/b", false},
		{"a\x00b", false},
		{"a\xffb", false},
		{"\xed\xa0\x80", false},
		{"hana\n1", false},
		{"é", false},
		{"a?b", false},
		{"a#b", false},
		{"a%2Fb", false},
	} {
		if got := validClientID(tc.id); got != tc.want {
			t.Errorf("validClientID(%.40q) = %v, want %v", tc.id, got, tc.want)
		}
		if err := checkClientID("thread_id", tc.id); (err == nil) != tc.want ||
			(err != nil && (!errors.Is(err, agentstream.ErrInvalid) || !strings.Contains(err.Error(), `"thread_id"`))) {
			t.Errorf("checkClientID(%.40q) = %v", tc.id, err)
		}
	}
}

func TestLookupID(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		id   string
		want bool
	}{
		{"thr_5YDKM6TMUTNIJNRO5RVTYU26ER", true},
		{"hana-1", true},
		{"hana 1", true}, // made before ids were checked: still found
		{"Première", true},
		{strings.Repeat("x", agentstream.MaxIDBytes), true},
		{"", false},
		{strings.Repeat("x", agentstream.MaxIDBytes+1), false},
		{"a\x00", false},
		{"a\xff", false},
		{"\xed\xa0\x80", false},
	} {
		if got := lookupID(tc.id); got != tc.want {
			t.Errorf("lookupID(%.40q) = %v, want %v", tc.id, got, tc.want)
		}
	}
}

func TestCheckBody(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, body string
		want       string // in the error; "" for none
	}{
		{"object", `{"query": "hi"}`, ""},
		{"empty object", ` {} `, ""},
		{"text", `{"query": "Première nuit 🌙 \u00e9 \ud83c\udf19 \\u0000 \ufffd \u0001"}`, ""},
		{"escaped surrogate pair", `{"q": "\uD83C\uDF19"}`, ""},
		{"nested", `{"metadata": {"tags": ["a", {"b": [1, true, null, -2.5e3]}]}}`, ""},
		{"null", `null`, "must be a JSON object, not null"},
		{"null with space", " \n null", "must be a JSON object, not null"},
		{"array", `[1]`, "not an array"},
		{"string", `"x"`, "not a string"},
		{"number", `5`, "not a number"},
		{"boolean", `true`, "not a boolean"},
		{"NUL in a value", `{"query": "a\u0000b"}`, `field "query" holds a NUL character`},
		{"NUL after an escaped backslash", `{"query": "a\\\u0000"}`, `field "query" holds a NUL`},
		{"NUL in a nested value", `{"metadata": {"tags": ["ok", {"b": "\u0000"}]}}`, `field "metadata.tags[1].b" holds a NUL`},
		{"NUL in a top-level key", `{"query": "hi", "baby\u0000": 1}`, `a field name holds a NUL`},
		{"NUL in a nested key", `{"metadata": {"k\u0000": 1}}`, `a key in field "metadata" holds a NUL`},
		{"lone high surrogate", `{"query": "\ud800"}`, `field "query" holds \ud800, half of a UTF-16 surrogate pair`},
		{"high surrogate then text", `{"query": "\ud800x"}`, `field "query" holds \ud800`},
		{"two high surrogates", `{"query": "\ud800\ud800"}`, `field "query" holds \ud800`},
		{"lone low surrogate", `{"query": "x\uDC00"}`, `field "query" holds \udc00`},
		{"surrogate in a key", `{"\udfff": 1}`, `a field name holds \udfff`},
		{"surrogate in an array", `{"a": [1, "\ud800"]}`, `field "a[1]" holds \ud800`},
		{"invalid UTF-8", "{\"query\": \"a\xffb\"}", `field "query" is not valid UTF-8`},
		{"UTF-8 of a surrogate", "{\"title\": \"\xed\xa0\x80\"}", `field "title" is not valid UTF-8`},
		{"invalid UTF-8 in a key", "{\"metadata\": {\"\xc3\": 1}}", `a key in field "metadata" is not valid UTF-8`},
		{"key with an escape named", `{"a\"b": "\u0000"}`, `field "a\"b" holds a NUL`},
	} {
		err := checkBody([]byte(tc.body))
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (!errors.Is(err, agentstream.ErrInvalid) || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want ErrInvalid saying %s", tc.name, err, tc.want)
		}
	}
}

// FuzzCheckJSONText: on any JSON text the check does not panic, refuses
// every text that is not UTF-8, and passes only texts whose strings
// encoding/json decodes without a NUL and without inventing U+FFFD.
func FuzzCheckJSONText(f *testing.F) {
	for _, s := range []string{
		`{"query": "hi", "thread_id": "hana-1", "baby_name": "Hana", "pregnancy_week": 12}`,
		`{"a": "\u0000"}`, `{"a": "\\u0000"}`, `{"a": "\ud800"}`, `{"a": "\ud83c\udf19"}`, `{"\udc00": 1}`,
		"{\"a\": \"\xff\"}", `{"m": {"t": [1, "x", {"y": null}], "z": []}}`, `[]`, `null`, `"\u0000"`,
		`{"a": "\ufffd"}`, "{\"a\": \"\xef\xbf\xbd\"}", `{"a":"\u00e9\\"}`, `{"a" : [ "\uD800\uDC00" , "\uDBFF\uDFFF" ] }`,
		`{"a": "\u12"}`, `{"a`, `{"a": tru`, `{"\`, `["\`, `{"a\u`, `[,`, `{:`, `[1 2]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		err := checkJSONText(data) // must not panic, JSON or not
		if !json.Valid(data) {
			return
		}
		if err != nil {
			if !errors.Is(err, agentstream.ErrInvalid) || agentstream.AsError(err).Message == "" {
				t.Fatalf("error %v is not a described ErrInvalid", err)
			}
			return
		}
		if !utf8.Valid(data) {
			t.Fatalf("passed a text that is not UTF-8: %q", data)
		}
		var v any
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber() // 1E1000 is valid JSON, not a float64
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("valid JSON does not decode: %v", err)
		}
		hadFFFD := bytes.Contains(data, []byte("\ufffd")) || bytes.Contains(bytes.ToLower(data), []byte(`\ufffd`))
		var walk func(v any)
		walk = func(v any) {
			check := func(s string) {
				if strings.IndexByte(s, 0) >= 0 {
					t.Fatalf("passed a NUL: %q", data)
				}
				if !hadFFFD && strings.ContainsRune(s, utf8.RuneError) {
					t.Fatalf("passed a text encoding/json changes (U+FFFD): %q", data)
				}
			}
			switch v := v.(type) {
			case string:
				check(v)
			case []any:
				for _, x := range v {
					walk(x)
				}
			case map[string]any:
				for k, x := range v {
					check(k)
					walk(x)
				}
			}
		}
		walk(v)
	})
}
