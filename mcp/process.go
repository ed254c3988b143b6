package mcp

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"

	"github.com/agentstream/agentstream/tools"
)

// inherited are the environment variables a child process gets from
// agentstream's own environment; the rest (API keys, tokens) are not
// passed on: a server gets other variables only from its env setting.
var inherited = []string{"HOME", "LANG", "LC_ALL", "LC_CTYPE", "LOGNAME", "PATH", "SHELL", "TERM", "TMPDIR", "TZ", "USER"}

// ChildEnv is the environment of an MCP server's child process: the
// variables of inherited that are set, then env (which wins).
func ChildEnv(env map[string]string) []string {
	var out []string
	for _, k := range inherited {
		if _, set := env[k]; set {
			continue
		}
		if v, ok := os.LookupEnv(k); ok {
			out = append(out, k+"="+v)
		}
	}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		out = append(out, k+"="+env[k])
	}
	return out
}

// process is an MCP server's child process.
type process struct {
	cmd    *exec.Cmd
	stderr *tail
}

func newProcess(cmd *exec.Cmd, server string, logger *slog.Logger, secrets *tools.Secrets) *process {
	p := &process{cmd: cmd, stderr: &tail{server: server, logger: logger, secrets: secrets}}
	cmd.Stderr = p.stderr
	// A grandchild holding stderr open must not hold up Wait.
	cmd.WaitDelay = stopGrace
	ownGroup(cmd)
	return p
}

// kill stops whatever is left of the process's group: what the server
// started. Safe on nil and before the process started.
func (p *process) kill() {
	if p == nil || p.cmd.Process == nil {
		return
	}
	killGroup(p.cmd)
}

// explain adds to err how the process ended, once known, and the end of
// what it wrote on stderr. Call it once the process was waited for (the
// session closed), or not started. Safe on nil.
func (p *process) explain(err error) error {
	if p == nil {
		return err
	}
	var notes []string
	if st := p.cmd.ProcessState; st != nil {
		notes = append(notes, "the process ended: "+st.String())
	}
	if s := p.stderr.last(); s != "" {
		notes = append(notes, fmt.Sprintf("its stderr ended with %q", s))
	}
	if len(notes) == 0 {
		return err
	}
	return fmt.Errorf("%w (%s)", err, strings.Join(notes, "; "))
}

// tail keeps the end of a child's stderr, for the errors that say why it
// failed, and logs each line (at debug level), secrets masked.
type tail struct {
	server  string
	logger  *slog.Logger
	secrets *tools.Secrets
	mu      sync.Mutex
	buf     []byte // the end of what was written
	cut     bool   // buf lost its start
	line    []byte // the line being written
}

const tailBytes = 512

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > tailBytes {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-tailBytes:]...)
		t.cut = true
	}
	t.line = append(t.line, p...)
	for {
		i := bytes.IndexByte(t.line, '\n')
		if i < 0 {
			break
		}
		t.logger.Debug("MCP server stderr", "mcp_server", t.server, "line", t.secrets.Mask(string(t.line[:i])))
		t.line = t.line[i+1:]
	}
	if len(t.line) > 4*tailBytes { // a line without end is not kept whole
		t.line = t.line[:0]
	}
	return len(p), nil
}

// last returns the end of stderr, trimmed.
func (t *tail) last() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := string(t.buf)
	if t.cut {
		// Cut: the first line may hold the end of a secret, which masking
		// would not recognise.
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			s = s[i+1:]
		}
	}
	return strings.TrimSpace(strings.ToValidUTF8(t.secrets.Mask(s), ""))
}

// maskedError is an error whose text had secrets in it, masked.
type maskedError struct {
	err  error
	text string
}

func (e maskedError) Error() string { return e.text }
func (e maskedError) Unwrap() error { return e.err }

// mask returns err with the secrets in its text masked: the errors of a
// server are logged and quoted by check-config, and may quote what the
// server said (its stderr, an HTTP error page).
func (s *Set) mask(err error) error {
	if err == nil {
		return nil
	}
	if text := s.secrets.Mask(err.Error()); text != err.Error() {
		return maskedError{err: err, text: text}
	}
	return err
}
