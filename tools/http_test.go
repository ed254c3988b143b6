package tools

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
)

// captured is one request a test server got.
type captured struct {
	method string
	query  url.Values
	header http.Header
	body   string
}

// echoServer answers every request with status and answer, and sends what
// it got on the returned channel.
func echoServer(t testing.TB, status int, answer string) (*httptest.Server, <-chan captured) {
	t.Helper()
	got := make(chan captured, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- captured{r.Method, r.URL.Query(), r.Header.Clone(), string(b)}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, answer)
	}))
	t.Cleanup(srv.Close)
	return srv, got
}

func newHTTPTool(t testing.TB, c HTTPConfig) *HTTP {
	t.Helper()
	if c.Name == "" {
		c.Name = "lookup_order"
	}
	tool, err := NewHTTP(c)
	if err != nil {
		t.Fatalf("NewHTTP: %v", err)
	}
	return tool
}

// runCtx is the context of a tool call in a run of user u with the given
// context.
func runCtx(u string, context_ map[string]any) context.Context {
	return agentstream.WithRunInfo(context.Background(), agentstream.RunInfo{
		RunID: "run_1", ThreadID: "thr_1", UserID: u, Agent: "helper", Context: context_,
	})
}

// TestHTTPToolPost: POST sends the arguments as the JSON body with the
// configured headers and the forwarded user and context, and answers with
// the server's body.
func TestHTTPToolPost(t *testing.T) {
	t.Parallel()
	srv, got := echoServer(t, http.StatusOK, `{"status":"shipped"}`)
	tool := newHTTPTool(t, HTTPConfig{
		Description: "Look up an order", Parameters: json.RawMessage(`{"type":"object"}`),
		URL: srv.URL + "/orders", Method: "post",
		Headers: map[string]string{"Authorization": "Bearer tok-123456", "X-Shop": "demo"},
		Forward: Forward{UserHeader: "X-User-Id", ContextHeaders: map[string]string{
			"pregnancy_week": "X-Pregnancy-Week", "baby_name": "X-Baby-Name", "absent": "X-Absent", "note": "X-Note",
		}},
	})
	ctx := runCtx("user-7", map[string]any{"pregnancy_week": 12.0, "baby_name": "Hana", "note": "two\nlines"})
	out, err := tool.Call(ctx, json.RawMessage(`{"order_id":"A-12","items":[1,2]}`))
	if err != nil || out != `{"status":"shipped"}` {
		t.Fatalf("Call = %q, %v", out, err)
	}
	c := <-got
	if c.method != "POST" || c.body != `{"order_id":"A-12","items":[1,2]}` {
		t.Fatalf("the server got %s %q", c.method, c.body)
	}
	for name, want := range map[string]string{
		"Content-Type": "application/json", "Authorization": "Bearer tok-123456", "X-Shop": "demo",
		"X-User-Id": "user-7", "X-Pregnancy-Week": "12", "X-Baby-Name": "Hana", "X-Note": `"two\nlines"`, "X-Absent": "",
	} {
		if v := c.header.Get(name); v != want {
			t.Errorf("header %s = %q, want %q", name, v, want)
		}
	}
	if spec := tool.Spec(); spec.Name != "lookup_order" || spec.Description != "Look up an order" || string(spec.Parameters) != `{"type":"object"}` {
		t.Fatalf("spec %+v", spec)
	}
}

// TestHTTPToolGet: GET sends the arguments as query parameters beside the
// URL's own, strings as they are, other values as JSON, null left out.
func TestHTTPToolGet(t *testing.T) {
	t.Parallel()
	srv, got := echoServer(t, http.StatusOK, "found")
	tool := newHTTPTool(t, HTTPConfig{URL: srv.URL + "/orders?shop=demo", Method: "GET"})
	out, err := tool.Call(context.Background(), json.RawMessage(
		`{"order_id":"A 12&x=1","limit":5,"exact":true,"filter":{"status": ["open", "paid"]},"none":null}`))
	if err != nil || out != "found" {
		t.Fatalf("Call = %q, %v", out, err)
	}
	c := <-got
	want := url.Values{
		"shop": {"demo"}, "order_id": {"A 12&x=1"}, "limit": {"5"}, "exact": {"true"},
		"filter": {`{"status":["open","paid"]}`},
	}
	if c.method != "GET" || c.body != "" || c.query.Encode() != want.Encode() {
		t.Fatalf("the server got %s %v %q, want the query %v", c.method, c.query, c.body, want)
	}
	if c.header.Get("Content-Type") != "" {
		t.Fatalf("a GET has no body, so no Content-Type; got %q", c.header.Get("Content-Type"))
	}
	// Without a run, nothing is forwarded, and nothing fails.
	if _, err := tool.Call(context.Background(), json.RawMessage(`[1]`)); err == nil || !strings.Contains(err.Error(), "JSON object") {
		t.Fatalf("arguments that are not an object: %v", err)
	}
}

// TestHTTPToolFailures: what goes wrong is a tool error the model can read:
// a failed status with an excerpt, an answer too large, a server that
// cannot be reached, the tool's timeout, a stopped run.
func TestHTTPToolFailures(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("database   is\n down ", 100)
	failing, _ := echoServer(t, http.StatusInternalServerError, long)
	big, _ := echoServer(t, http.StatusOK, strings.Repeat("x", 2000))
	exact, _ := echoServer(t, http.StatusOK, strings.Repeat("y", 1000))
	empty, _ := echoServer(t, http.StatusNoContent, "")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	_ = ln.Close()

	tests := []struct {
		name    string
		cfg     HTTPConfig
		wantOut string
		wantErr []string
	}{
		{"500", HTTPConfig{URL: failing.URL}, "", []string{"HTTP 500 Internal Server Error", "database is down database is down", " …"}},
		{"too large", HTTPConfig{URL: big.URL, MaxResponseBytes: 1000}, "", []string{"larger than 1000 bytes", "max_response_bytes"}},
		{"at the cap", HTTPConfig{URL: exact.URL, MaxResponseBytes: 1000}, strings.Repeat("y", 1000), nil},
		{"no content", HTTPConfig{URL: empty.URL}, "(HTTP 204 No Content, with no content)", nil},
		{"refused", HTTPConfig{URL: closed + "/orders?key=s3cr3t-value"}, "", []string{"could not reach the tool's server " + strings.TrimPrefix(closed, "http://"), "refused"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			out, err := newHTTPTool(t, tt.cfg).Call(context.Background(), json.RawMessage(`{}`))
			if tt.wantErr == nil {
				if err != nil || out != tt.wantOut {
					t.Fatalf("Call = %q, %v; want %q", out, err, tt.wantOut)
				}
				return
			}
			if err == nil {
				t.Fatalf("Call = %q, want an error", out)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error %q lacks %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "s3cr3t") || len(err.Error()) > 500 {
				t.Fatalf("error %q quotes the URL's query or is too long", err)
			}
		})
	}
}

// TestHTTPToolStopped: the call's context ends the request, at the tool's
// timeout or when the run stops; the server sees it closed.
func TestHTTPToolStopped(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name    string
		timeout time.Duration
		want    string
	}{
		{"own timeout", 100 * time.Millisecond, "did not answer within 100ms"},
		{"run stopped", 0, "the run was stopped"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			closedByClient := make(chan struct{})
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				// net/http watches the connection once the body is read.
				_, _ = io.ReadAll(r.Body)
				select {
				case <-r.Context().Done():
					close(closedByClient)
				case <-time.After(time.Minute):
				}
			}))
			t.Cleanup(srv.Close)
			tool := newHTTPTool(t, HTTPConfig{URL: srv.URL, Timeout: tt.timeout})
			if tool.Timeout() != tt.timeout {
				t.Fatalf("Timeout() = %v", tool.Timeout())
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.timeout > 0 {
				// As the runner does with a TimedTool's timeout.
				ctx, cancel = context.WithTimeout(ctx, tool.Timeout())
				defer cancel()
			} else {
				time.AfterFunc(100*time.Millisecond, cancel)
			}
			_, err := tool.Call(ctx, json.RawMessage(`{}`))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Call error %v, want %q", err, tt.want)
			}
			select {
			case <-closedByClient:
			case <-time.After(30 * time.Second):
				t.Fatal("the server never saw the request closed")
			}
		})
	}
}

func TestNewHTTPRefuses(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		cfg  HTTPConfig
		want string
	}{
		{HTTPConfig{URL: "http://x", Method: "TRACE"}, `method "TRACE" is not one of GET, POST, PUT, PATCH, DELETE`},
		{HTTPConfig{URL: ""}, "empty"},
		{HTTPConfig{URL: "ftp://x/y"}, "http:// or https://"},
		{HTTPConfig{URL: "/orders"}, "http:// or https://"},
		{HTTPConfig{URL: "http:///orders"}, "no host"},
		{HTTPConfig{URL: "http://x/%zz?token=s3cr3t"}, "not a URL"},
	} {
		_, err := NewHTTP(tt.cfg)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("NewHTTP(%+v) = %v, want %q", tt.cfg, err, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("the error %q quotes the URL", err)
		}
	}
}

func TestQueryValue(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		raw, want string
		keep      bool
	}{
		{`"a b"`, "a b", true},
		{`""`, "", true},
		{`"\u00e9\n"`, "é\n", true},
		{`12.50`, "12.50", true},
		{`false`, "false", true},
		{`null`, "", false},
		{` [1, "x"] `, `[1,"x"]`, true},
		{`{"a": {"b": null}}`, `{"a":{"b":null}}`, true},
	} {
		got, keep := queryValue(json.RawMessage(tt.raw))
		if got != tt.want || keep != tt.keep {
			t.Errorf("queryValue(%s) = %q, %v; want %q, %v", tt.raw, got, keep, tt.want, tt.keep)
		}
	}
}

func TestExcerpt(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		body string
		n    int
		want string
	}{
		{"", 10, "(no content)"},
		{"  \n\t ", 10, "(no content)"},
		{"short", 10, "short"},
		{" a \n\n b ", 10, "a b"},
		{"0123456789abc", 10, "0123456789 …"},
		{"ééééé", 5, "éé …"}, // 2 bytes each: cut before the third
		{"ok\xffok", 10, "ok\uFFFDok"},
	} {
		if got := excerpt([]byte(tt.body), tt.n); got != tt.want {
			t.Errorf("excerpt(%q, %d) = %q, want %q", tt.body, tt.n, got, tt.want)
		}
	}
}

// TestHTTPToolLogs: a failed call is logged with the tool, the run and
// why, but not the answer's excerpt, which may echo a secret.
func TestHTTPToolLogs(t *testing.T) {
	t.Parallel()
	failing, _ := echoServer(t, http.StatusBadGateway, "upstream refused token-abcdef")
	var logs strings.Builder
	tool := newHTTPTool(t, HTTPConfig{URL: failing.URL + "/x?key=q-secret", Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	_, err := tool.Call(runCtx("u", nil), json.RawMessage(`{}`))
	if err == nil || !strings.Contains(err.Error(), "token-abcdef") {
		t.Fatalf("the model is shown the excerpt: %v", err)
	}
	out := logs.String()
	for _, want := range []string{"an HTTP tool's call failed", "tool=lookup_order", "run_id=run_1", `why="HTTP 502 Bad Gateway"`, "host=127.0.0.1:"} {
		if !strings.Contains(out, want) {
			t.Errorf("the log %q lacks %q", out, want)
		}
	}
	if strings.Contains(out, "token-abcdef") || strings.Contains(out, "q-secret") {
		t.Errorf("the log %q quotes the answer or the URL's query", out)
	}
	logs.Reset()
	if _, err := tool.Call(context.Background(), json.RawMessage(`[]`)); err == nil || !strings.Contains(logs.String(), "JSON object") {
		t.Errorf("a call refused before the request is logged too: %q", logs.String())
	}
}
