//go:build unix

package main

import (
	"bytes"
	"errors"
	"os/exec"
	"testing"
)

// TestProcessCheckConfig: the built binary reports a file's mistakes, each
// at its line, with exit status 1, and a valid file with 0.
func TestProcessCheckConfig(t *testing.T) {
	t.Parallel()
	bin := agentstreamBinary(t)
	file := writeFile(t, "agentstream.yaml", badConfig)
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, "check-config", file)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	var exit *exec.ExitError
	if err := cmd.Run(); !errors.As(err, &exit) || exit.ExitCode() != 1 || stdout.Len() != 0 {
		t.Fatalf("check-config: %v, stdout %q, stderr:\n%s\nwant exit status 1", err, stdout.String(), stderr.String())
	}
	checkProblemsOutput(t, file, stderr.String())

	good := writeFile(t, "good.yaml", "agents:\n  - name: helper\n")
	out, err := exec.Command(bin, "check-config", good).Output()
	if err != nil || string(out) != "ok: "+good+": 2 agents (default: assistant), 1 tool, 0 model endpoints; agents without one use the simulated model unless OPENAI_API_KEY or OPENAI_BASE_URL is set\n" {
		t.Fatalf("check-config on a valid file: %v, %q", err, out)
	}
}
