package main

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// badConfig has eight mistakes: YAML the decoder refuses, an unset
// variable, values Validate refuses, and model endpoints and tools agents
// name wrongly.
const badConfig = `addr: 127.0.0.1:0
adr: 127.0.0.1:1
runs:
  tool_timeout: 30
models:
  - name: local
  - name: local
    base_url: http://127.0.0.1:11434/v1
    api_key: ${AGENTSTREAM_CHECK_CONFIG_TEST_UNSET}
agents:
  - name: helper
    endpoint: locl
    model: llama3.1
    tools: [current_time, weather]
  - name: writer
    endpoint: local
`

// badConfigProblems are badConfig's problems as check-config prints them,
// after the file's name.
var badConfigProblems = []string{
	":2:1: adr: unknown key; did you mean addr?",
	":4:17: runs.tool_timeout: 30 is not a duration; durations need a unit, e.g. 30s",
	":6:5: models[0].base_url: empty: every model endpoint needs the URL of its API",
	`:7:5: models[1].name: model endpoint "local" is declared twice (also models[0]): rename or remove one`,
	":9:5: models[1].api_key: ${AGENTSTREAM_CHECK_CONFIG_TEST_UNSET} is not set in the environment",
	`:12:5: agents[0].endpoint: unknown model endpoint "locl"; did you mean local?`,
	`:14:27: agents[0].tools[1]: unknown tool "weather"; the tools are current_time, due_date`,
	":15:5: agents[1].model: empty: an agent with an endpoint names its model there",
}

// checkProblemsOutput checks check-config's report of badConfig: a
// header, then each problem on its own line, at its line in file.
func checkProblemsOutput(t testing.TB, file, stderr string) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
	if len(lines) != 1+len(badConfigProblems) || lines[0] != "agentstream check-config: invalid configuration (8 problems):" {
		t.Fatalf("stderr:\n%s\nwant a header and %d problems", stderr, len(badConfigProblems))
	}
	for i, w := range badConfigProblems {
		if !strings.HasPrefix(lines[i+1], file+w) {
			t.Errorf("line %d: %q, want %q", i+2, lines[i+1], file+w)
		}
	}
}

func writeFile(t testing.TB, name, content string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// TestCheckConfigProblems: a file with several mistakes gets each on its
// own line, at its line, and exit status 1; nothing on stdout.
func TestCheckConfigProblems(t *testing.T) {
	t.Parallel()
	file := writeFile(t, "agentstream.yaml", badConfig)
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), func() {}, []string{"check-config", file}, env(nil), &stdout, &stderr)
	if code != 1 || stdout.Len() != 0 {
		t.Fatalf("exit %d, stdout %q, stderr:\n%s\nwant exit 1 and nothing on stdout", code, stdout.String(), stderr.String())
	}
	checkProblemsOutput(t, file, stderr.String())
}

// TestCheckConfigOK: a valid file exits 0 with a summary of what it
// declares; the environment does not change what is checked.
func TestCheckConfigOK(t *testing.T) {
	t.Parallel()
	file := writeFile(t, "agentstream.yaml", `default_agent: helper
openai:
  api_key: sk-test
models:
  - name: local
    base_url: http://${OLLAMA_HOST}/v1
    api_key: ${OLLAMA_KEY}
  - name: vllm
    base_url: http://127.0.0.1:8000/v1
agents:
  - name: helper
    endpoint: local
    model: llama3.1
    tools: [current_time, due_date]
  - name: writer
    tools: [current_time]
`)
	var stdout, stderr bytes.Buffer
	// serve would refuse this address; check-config checks the file,
	// with its variables.
	code := run(context.Background(), func() {}, []string{"check-config", file},
		env(map[string]string{"AGENTSTREAM_ADDR": "0.0.0.0:80", "OLLAMA_HOST": "127.0.0.1:11434", "OLLAMA_KEY": "k"}), &stdout, &stderr)
	want := "ok: " + file + ": 3 agents (default: helper), 2 tools, 2 model endpoints; agents without one use https://api.openai.com/v1\n"
	if code != 0 || stdout.String() != want || stderr.Len() != 0 {
		t.Fatalf("exit %d, stdout %q, stderr %q; want 0 and %q", code, stdout.String(), stderr.String(), want)
	}
}

// TestCheckConfigUsage: usage errors and unreadable files exit 2, help 0.
func TestCheckConfigUsage(t *testing.T) {
	t.Parallel()
	good := writeFile(t, "good.yaml", "agents: []\n")
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no file", nil, 2, "want one config file, got 0"},
		{"two files", []string{good, good}, 2, "want one config file, got 2"},
		{"unknown flag", []string{"--frobnicate", good}, 2, "flag provided but not defined: -frobnicate"},
		{"unknown flag after the file", []string{good, "--bogus"}, 2, "flag provided but not defined: -bogus"},
		{"missing file", []string{filepath.Join(t.TempDir(), "none.yaml")}, 2, "reading the config file"},
		{"a directory", []string{t.TempDir()}, 2, "reading the config file"},
		{"help", []string{"--help"}, 0, "Usage: agentstream check-config [flags] FILE"},
		{"help after the file", []string{good, "-h"}, 0, "Exit status: 0 when the file is valid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), func() {}, append([]string{"check-config"}, tt.args...), env(nil), &stdout, &stderr)
			if code != tt.code || !strings.Contains(stderr.String(), tt.want) || stdout.Len() != 0 {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit %d and %q", code, stdout.String(), stderr.String(), tt.code, tt.want)
			}
		})
	}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), func() {}, []string{"help"}, env(nil), &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "agentstream check-config FILE") {
		t.Fatalf("the command's help lacks check-config: %q", stdout.String())
	}
}

// varRef finds the ${NAME} references of a config file.
var varRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)`)

// TestCheckConfigExamples: every config under examples/ is valid, with
// the environment variables it references set.
func TestCheckConfigExamples(t *testing.T) {
	t.Parallel()
	var files []string
	err := filepath.WalkDir(filepath.Join("..", "..", "examples"), func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && (strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
			files = append(files, path)
		}
		return err
	})
	if err != nil || len(files) == 0 {
		t.Fatalf("found %d example configs: %v", len(files), err)
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		vars := map[string]string{}
		for _, m := range varRef.FindAllStringSubmatch(string(data), -1) {
			vars[m[1]] = "value-of-" + m[1]
		}
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), func() {}, []string{"check-config", file}, env(vars), &stdout, &stderr); code != 0 || !strings.HasPrefix(stdout.String(), "ok: "+file+": ") {
			t.Errorf("check-config %s: exit %d, stdout %q, stderr:\n%s", file, code, stdout.String(), stderr.String())
		}
	}
}
