package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestServeUnsetVariable: serve refuses a config whose HTTP tool reads a
// variable the environment lacks, naming it at its line, and says nothing
// of the values it did read.
func TestServeUnsetVariable(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "agentstream.yaml")
	if err := os.WriteFile(file, []byte(`addr: 127.0.0.1:0
tools:
  - name: lookup_order
    http:
      url: https://shop.example/orders
      headers:
        Authorization: Bearer ${AGENTSTREAM_TEST_NEVER_SET_TOKEN}
agents:
  - name: helper
    instructions: "Keep ${AGENTSTREAM_TEST_NEVER_SET_TOKEN} as written"
    tools: [lookup_order]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), func() {}, []string{"serve", "--config", file, "--database-url", filepath.Join(dir, "a.db")},
		env(nil), &stdout, &stderr)
	want := file + ":7:9: tools[0].http.headers.Authorization: ${AGENTSTREAM_TEST_NEVER_SET_TOKEN} is not set in the environment"
	if code != 2 || !strings.Contains(stderr.String(), "invalid configuration (1 problem)") || !strings.Contains(stderr.String(), want) {
		t.Fatalf("exit %d, stderr:\n%s\nwant exit 2 and %q", code, stderr.String(), want)
	}
}
