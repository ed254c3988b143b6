package httpapi

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

// TestCORS: preflights of allowed origins are answered 204 before the
// handler (so before authentication) with the methods, headers and max
// age; other requests of allowed origins get their origin and the exposed
// headers; unknown origins, requests without Origin and a CORS that is off
// get no CORS header, and their preflights go on to the handler.
func TestCORS(t *testing.T) {
	t.Parallel()
	list := CORS{AllowedOrigins: []string{"https://app.example.com", "http://127.0.0.1:3000/", "HTTPS://Upper.Example.com:443"}, AllowedHeaders: []string{"X-Custom", "authorization"}}
	for _, tc := range []struct {
		name       string
		cors       CORS
		method     string
		origin     string
		preflight  string // Access-Control-Request-Method
		wantStatus int    // 0: the handler's (418)
		wantAllow  string // Access-Control-Allow-Origin
		wantVary   bool
	}{
		{"preflight, allowed", list, "OPTIONS", "https://app.example.com", "POST", 204, "https://app.example.com", true},
		{"preflight, allowed with a port", list, "OPTIONS", "http://127.0.0.1:3000", "GET", 204, "http://127.0.0.1:3000", true},
		{"preflight, default port configured", list, "OPTIONS", "https://upper.example.com", "DELETE", 204, "https://upper.example.com", true},
		{"preflight, unknown origin", list, "OPTIONS", "https://evil.example.com", "POST", 0, "", true},
		{"preflight, another port", list, "OPTIONS", "http://127.0.0.1:3001", "POST", 0, "", true},
		{"preflight, another scheme", list, "OPTIONS", "http://app.example.com", "POST", 0, "", true},
		{"preflight, a longer host", list, "OPTIONS", "https://app.example.com.evil.com", "POST", 0, "", true},
		{"preflight, null origin", list, "OPTIONS", "null", "POST", 0, "", true},
		{"preflight, no origin", list, "OPTIONS", "", "POST", 0, "", true},
		{"OPTIONS, not a preflight", list, "OPTIONS", "https://app.example.com", "", 0, "https://app.example.com", true},
		{"GET, allowed", list, "GET", "https://app.example.com", "", 0, "https://app.example.com", true},
		{"POST, unknown origin", list, "POST", "https://evil.example.com", "", 0, "", true},
		{"GET, no origin", list, "GET", "", "", 0, "", true},
		{"off", CORS{}, "OPTIONS", "https://app.example.com", "POST", 0, "", false},
		{"off, GET", CORS{}, "GET", "https://app.example.com", "", 0, "", false},
		{"any origin", CORS{AllowedOrigins: []string{"*"}}, "OPTIONS", "https://whoever.example", "POST", 204, "*", true},
		{"any origin, GET", CORS{AllowedOrigins: []string{"*"}}, "GET", "https://whoever.example", "", 0, "*", true},
		{"any origin, no Origin", CORS{AllowedOrigins: []string{"*"}}, "GET", "", "", 0, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			next := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) })
			req := httptest.NewRequest(tc.method, "/v1/threads", nil)
			if tc.origin != "" {
				req.Header.Set("Origin", tc.origin)
			}
			if tc.preflight != "" {
				req.Header.Set("Access-Control-Request-Method", tc.preflight)
				req.Header.Set("Access-Control-Request-Headers", "authorization,content-type")
			}
			w := httptest.NewRecorder()
			newCORS(tc.cors).wrap(next).ServeHTTP(w, req)
			h := w.Result().Header
			want := tc.wantStatus
			if want == 0 {
				want = http.StatusTeapot
			}
			if w.Code != want || h.Get("Access-Control-Allow-Origin") != tc.wantAllow {
				t.Fatalf("%d, Allow-Origin %q; want %d, %q", w.Code, h.Get("Access-Control-Allow-Origin"), want, tc.wantAllow)
			}
			if got := slices.Contains(h.Values("Vary"), "Origin"); got != tc.wantVary {
				t.Fatalf("Vary %q", h.Values("Vary"))
			}
			if h.Get("Access-Control-Allow-Credentials") != "" {
				t.Fatal("Access-Control-Allow-Credentials sent: the API reads no cookie")
			}
			if tc.wantAllow == "" {
				for k := range h {
					if strings.HasPrefix(k, "Access-Control-") {
						t.Fatalf("%s sent to an origin that may not call", k)
					}
				}
				return
			}
			if w.Code == http.StatusNoContent {
				if h.Get("Access-Control-Allow-Methods") != "GET, HEAD, POST, PATCH, DELETE" || h.Get("Access-Control-Max-Age") != "600" ||
					h.Get("Access-Control-Allow-Headers") != "Authorization, Content-Type, Last-Event-ID, Accept, X-Thread-Id"+extraHeaders(tc.cors) {
					t.Fatalf("preflight answered %v", h)
				}
				return
			}
			if h.Get("Access-Control-Expose-Headers") != "X-Run-Id, X-Thread-Id, Retry-After" {
				t.Fatalf("Expose-Headers %q", h.Get("Access-Control-Expose-Headers"))
			}
		})
	}
}

// extraHeaders are the configured headers the defaults do not have
// (Authorization is one of them, in another case).
func extraHeaders(c CORS) string {
	if len(c.AllowedHeaders) > 0 {
		return ", X-Custom"
	}
	return ""
}

// TestCORSHTTP: through the real server with keys, a preflight is
// answered without a key; a request without a key is a 401 the page can
// read; with a key, a stream's X-Run-Id is exposed; an unknown origin's
// preflight is a 405 with no CORS header.
func TestCORSHTTP(t *testing.T) {
	t.Parallel()
	const key = "key-0123456789abcdef"
	const page = "http://127.0.0.1:5173"
	f := newFixture(t, Options{Keys: map[string]string{key: "u1"}, CORS: CORS{AllowedOrigins: []string{page}}})
	run := f.runningFor("u1")
	send := func(method, path, origin string, h map[string]string) *http.Response {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), method, f.url+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Origin", origin)
		for k, v := range h {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = resp.Body.Close() })
		return resp
	}
	pre := map[string]string{"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type"}
	resp := send("OPTIONS", "/v1/threads", page, pre)
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != page ||
		!strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Fatalf("preflight: %d %v", resp.StatusCode, resp.Header)
	}
	resp = send("OPTIONS", "/v1/threads", "http://127.0.0.1:6666", pre)
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("an unknown origin's preflight: %d %v", resp.StatusCode, resp.Header)
	}
	resp = send("POST", "/v1/threads", page, nil)
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("Access-Control-Allow-Origin") != page {
		t.Fatalf("no key: %d %v", resp.StatusCode, resp.Header)
	}
	resp = send("GET", "/v1/runs/"+run.ID+"/events", page, map[string]string{"Authorization": "Bearer " + key})
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != page ||
		!strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), "X-Run-Id") || resp.Header.Get("X-Run-Id") != run.ID {
		t.Fatalf("events: %d %v", resp.StatusCode, resp.Header)
	}
	resp = send("GET", "/v1/runs/"+run.ID, "http://127.0.0.1:6666", map[string]string{"Authorization": "Bearer " + key})
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("an unknown origin's GET: %d %v", resp.StatusCode, resp.Header)
	}
}
