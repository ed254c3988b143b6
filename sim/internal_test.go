package sim

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestDefaultTextAndSplit(t *testing.T) {
	for _, n := range []int{-1, 0, 1, 2, 20, 100} {
		text := DefaultText(n)
		toks := Split(text)
		want := max(n, 1)
		if len(toks) != want || strings.Join(toks, "") != text {
			t.Errorf("DefaultText(%d) = %q splits into %d tokens %q", n, text, len(toks), toks)
		}
		if !strings.HasPrefix(text, Prefix) || strings.HasSuffix(text, " ") {
			t.Errorf("DefaultText(%d) = %q", n, text)
		}
	}
	for _, tc := range []struct {
		text string
		want []string
	}{
		{"", nil},
		{" ", []string{" "}},
		{"a", []string{"a"}},
		{"a b", []string{"a ", "b"}},
		{"  a\n\nb\t c  ", []string{"  a\n\n", "b\t ", "c  "}},
		{"héllo wörld\u00a0x", []string{"héllo ", "wörld\u00a0", "x"}},
	} {
		if got := Split(tc.text); strings.Join(got, "|") != strings.Join(tc.want, "|") || len(got) != len(tc.want) {
			t.Errorf("Split(%q) = %q, want %q", tc.text, got, tc.want)
		}
	}
}

func TestNextPiece(t *testing.T) {
	args := `{"a":"héé€"}`
	var pieces []string
	for s := args; s != ""; {
		n := nextPiece(s, 4)
		pieces = append(pieces, s[:n])
		s = s[n:]
	}
	if strings.Join(pieces, "") != args {
		t.Fatalf("pieces %q", pieces)
	}
	for _, p := range pieces {
		if !utf8.ValidString(p) || len(p) < 4 && p != pieces[len(pieces)-1] {
			t.Errorf("piece %q of %q", p, pieces)
		}
	}
}

func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{
		``,
		`{}`,
		`null`,
		`{"model":"m","messages":[{"role":"user","content":"hi"}]}`,
		`{"model":"m","stream":true,"stream_options":{"include_usage":true},"temperature":1,"messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url"}]}]}`,
		`{"model":"m","messages":[{"role":"user","content":"t"},{"role":"assistant","content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{"}}]},{"role":"tool","tool_call_id":"c","content":"x"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","required":["a"]}}}]}`,
		`{"model":"m","messages":[{"role":"tool","tool_call_id":"c"}]}`,
		`{"model":5}`,
		`{"model":"m","messages":[{"content":{}}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, strict := range []bool{true, false} {
			r, err := parseRequest(body, strict)
			if (r == nil) == (err == nil) {
				t.Fatalf("parseRequest(%q) = %v, %v", body, r, err)
			}
			if err != nil {
				if err.Status != 400 || err.Message == "" || err.Type == "" {
					t.Fatalf("parseRequest(%q) error %+v", body, err)
				}
				continue
			}
			if r.Model == "" || len(r.Messages) == 0 {
				t.Fatalf("parseRequest(%q) accepted %+v", body, r)
			}
			// What the server does with a request must not panic either.
			d := Default(r)
			for _, c := range d.ToolCalls {
				if !json.Valid([]byte(c.Arguments)) {
					t.Fatalf("arguments %q", c.Arguments)
				}
			}
			_ = PromptTokens(r)
		}
	})
}

func BenchmarkChunkContent(b *testing.B) {
	c := newChunker("chatcmpl-sim-abcdefgh_1", 1700000000, "gpt-4o-mini")
	text := DefaultText(64)
	b.ReportAllocs()
	for b.Loop() {
		for t := text; t != ""; {
			n := nextToken(t)
			_ = c.content(t[:n])
			t = t[n:]
		}
	}
}
