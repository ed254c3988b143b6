package tools

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzHTTPToolRequest fuzzes what a model sends an HTTP tool (its
// arguments): they are refused unless a JSON object, and whatever they
// hold they never change where the request goes (scheme, host, path),
// the configured query or headers; a GET carries them as query
// parameters, a POST as its body, unchanged.
func FuzzHTTPToolRequest(f *testing.F) {
	for _, s := range []string{
		`{"order_id": "A-1"}`, `{"shop": "evil", "number": "T 1", "filter": {"a": [1]}, "n": null}`,
		`{"@evil.example/": "x", "../admin": "y", "#f": "z", "?q": "\r\nHost: evil"}`, `{"a": "\u0000"}`,
		``, `null`, `[]`, `"x"`, `{`, "{\"a\": \"\xff\"}",
	} {
		f.Add(s, false)
	}
	const secret = "Bearer tool-secret-0123"
	get := newHTTPTool(f, HTTPConfig{URL: "http://127.0.0.1:9/orders?shop=demo", Method: "GET", Headers: map[string]string{"Authorization": secret}})
	post := newHTTPTool(f, HTTPConfig{URL: "http://127.0.0.1:9/orders?shop=demo", Headers: map[string]string{"Authorization": secret}})
	f.Fuzz(func(t *testing.T, args string, usePost bool) {
		tool := get
		if usePost {
			tool = post
		}
		req, err := tool.request(context.Background(), []byte(args))
		if err != nil {
			if !strings.Contains(err.Error(), "JSON object") {
				t.Fatalf("%q refused with %v", args, err)
			}
			return
		}
		if req.URL.Scheme != "http" || req.URL.Host != "127.0.0.1:9" || req.URL.Path != "/orders" || req.URL.Fragment != "" ||
			req.URL.Query()["shop"][0] != "demo" || req.Header.Get("Authorization") != secret || len(req.Header.Values("Authorization")) != 1 {
			t.Fatalf("%q sent %s %s with %v", args, req.Method, req.URL, req.Header)
		}
		if !usePost {
			if req.Body != nil && req.Body != http.NoBody {
				t.Fatalf("a GET with a body")
			}
			return
		}
		b, err := io.ReadAll(req.Body)
		if err != nil || (strings.TrimSpace(args) != "" && string(b) != args) {
			t.Fatalf("the body %q for arguments %q (%v)", b, args, err)
		}
	})
}

// FuzzExcerpt: an excerpt of any answer, for an error, is valid UTF-8 of
// at most n bytes and the ellipsis, on one line.
func FuzzExcerpt(f *testing.F) {
	for _, s := range []string{"", "short", "ééééé", "ok\xffok", "a\r\nb\n\nc", strings.Repeat("日本", 100)} {
		f.Add([]byte(s), 10)
	}
	f.Fuzz(func(t *testing.T, body []byte, n int) {
		if n < 1 || n > 1<<16 {
			return
		}
		got := excerpt(body, n)
		if !utf8.ValidString(got) || len(got) > n+len(" …") && got != "(no content)" || strings.ContainsAny(got, "\r\n") {
			t.Fatalf("excerpt(%q, %d) = %q", body, n, got)
		}
	})
}
