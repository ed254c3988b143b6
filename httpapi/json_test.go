package httpapi

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestJSONNotHTMLEscaped: JSON bodies carry <, > and & as they are, not as
// \u003c…: they are API answers, not HTML, and a person reads them in logs
// and terminals.
func TestJSONNotHTMLEscaped(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{})
	resp, err := http.Post(f.url+"/v1/threads", "application/json", strings.NewReader(`{"<key>&": 1}`))
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if !strings.Contains(string(body), `"unknown field \"<key>&\" in the request body"`) || strings.Contains(string(body), `\u003c`) {
		t.Fatalf("body %s: want <key>& unescaped", body)
	}
	var e errorBody
	if err := json.Unmarshal(body, &e); err != nil || e.Error.Message != `unknown field "<key>&" in the request body` {
		t.Fatalf("body %s does not decode to the message: %v", body, err)
	}
}
