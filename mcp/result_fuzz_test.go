package mcp

import (
	"encoding/json"
	"strings"
	"testing"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// FuzzResultText: whatever result an MCP server sends (decoded by the
// SDK, as the wire is), what the model is told of it is the structured
// content as JSON when there is some, else every text content's text in
// order, and never a panic.
func FuzzResultText(f *testing.F) {
	for _, s := range []string{
		`{"content": [{"type": "text", "text": "hello"}]}`,
		`{"content": [{"type": "text", "text": "a\nb"}, {"type": "image", "data": "AAAA", "mimeType": "image/png"}, {"type": "text", "text": "\u0000"}]}`,
		`{"content": [], "structuredContent": {"n": 42, "ok": true}}`,
		`{"content": [{"type": "resource", "resource": {"uri": "file:///x", "text": "body"}}, {"type": "resource_link", "uri": "x://y", "name": "y"}]}`,
		`{"content": [{"type": "audio", "data": "", "mimeType": "audio/wav"}], "isError": true}`,
		`{"content": [{"type": "unknown"}]}`, `{"content": null}`, `{"structuredContent": null}`, `{}`, `[]`, `null`,
		"{\"content\": [{\"type\": \"text\", \"text\": \"\xff\"}]}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var res sdk.CallToolResult
		if json.Unmarshal(data, &res) != nil {
			return
		}
		out := resultText(&res)
		if res.StructuredContent != nil {
			if _, err := json.Marshal(res.StructuredContent); err == nil {
				if !json.Valid([]byte(out)) {
					t.Fatalf("structured content told as %q, not JSON", out)
				}
				return
			}
		}
		rest := out
		for _, c := range res.Content {
			if tc, ok := c.(*sdk.TextContent); ok {
				i := strings.Index(rest, tc.Text)
				if i < 0 {
					t.Fatalf("the text %q is not in %q, in order", tc.Text, out)
				}
				rest = rest[i+len(tc.Text):]
			}
		}
	})
}
