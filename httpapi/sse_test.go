package httpapi

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/agentstream/agentstream"
)

func TestBodyErrors(t *testing.T) {
	t.Parallel()
	s := New(nil, nil, nil, Options{MaxBodyBytes: 64})
	tests := []struct {
		name, body string
		code       agentstream.Code
		want       string
	}{
		{"empty", "", agentstream.CodeInvalidRequest, "empty"},
		{"malformed", `{"input": "x",}`, agentstream.CodeInvalidRequest, "malformed JSON at byte"},
		{"cut", `{"input": "x"`, agentstream.CodeInvalidRequest, "ends in the middle"},
		{"wrong type", `{"input": 5}`, agentstream.CodeInvalidRequest, `field "input" must be a string, not number`},
		{"not an object", `[1,2]`, agentstream.CodeInvalidRequest, "must be a JSON object"},
		{"unknown field", `{"inptu": "x"}`, agentstream.CodeInvalidRequest, `unknown field "inptu"`},
		{"trailing data", `{"input": "x"} {}`, agentstream.CodeInvalidRequest, "after its JSON object"},
		{"too large", `{"input": "` + strings.Repeat("x", 100) + `"}`, agentstream.CodeTooLarge, "larger than 64 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			r := httptest.NewRequest(http.MethodPost, "/v1/threads/x/runs", strings.NewReader(tt.body))
			var req createRunRequest
			err := s.decodeBody(w, r, &req, true)
			e := agentstream.AsError(err)
			if err == nil || e.Code != tt.code || !strings.Contains(e.Message, tt.want) {
				t.Fatalf("error %v (code %s), want %s containing %q", err, agentstream.CodeOf(err), tt.code, tt.want)
			}
		})
	}
}
