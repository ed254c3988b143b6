package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Bounds of the child server's life.
const (
	childStartTimeout = 30 * time.Second // to its "listening" log line
	childStopTimeout  = 20 * time.Second // from SIGTERM to its exit
	childShutdown     = 5 * time.Second  // its http.shutdown_timeout
	childLogKeep      = 64 << 10         // bytes of its log kept
)

// child is an `agentstream serve` (or `agentstream bench relay`) process
// started by Run.
type child struct {
	cmd    *exec.Cmd
	dir    string
	url    string // http://127.0.0.1:PORT
	log    *tailLog
	exited chan struct{} // closed once Wait has returned
}

var listeningRE = regexp.MustCompile(`addr=http://(127\.0\.0\.1:\d+)`)

// startChild starts `bin serve` on a free loopback port with a temporary
// SQLite file, against the OpenAI-compatible model at modelURL, with room
// for capacity runs at once, and waits until it listens. With h2c the
// server talks HTTP/2 without TLS to the model, as it would to an https
// API (the simulator the bench starts serves it); without, HTTP/1.1, a
// connection per call (Config.Upstream). With baseline it starts the relay
// instead (see Relay). A shared store (several instances) replaces the
// SQLite file with its PostgreSQL database and the in-process event log
// with its Redis.
func startChild(ctx context.Context, bin, modelURL string, capacity int, h2c, baseline bool, shared sharedStore) (*child, error) {
	dir, err := os.MkdirTemp("", "agentstream-bench-")
	if err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf("runs:\n  max_concurrent: %d\n  max_queued: %d\nhttp:\n  shutdown_timeout: %s\nopenai:\n  h2c: %v\n",
		capacity, capacity, childShutdown, h2c)
	if shared.redisURL != "" {
		cfg += fmt.Sprintf("redis_url: %q\nevent_log:\n  redis_prefix: %q\n", shared.redisURL, shared.redisPrefix)
	}
	if shared.apiKey != "" {
		cfg += fmt.Sprintf("auth:\n  keys:\n    - {key: %q, user: bench}\n", shared.apiKey)
	}
	database := filepath.Join(dir, "bench.db")
	if shared.databaseURL != "" {
		database = shared.databaseURL
	}
	cfgFile := filepath.Join(dir, "agentstream.yaml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	what := "agentstream serve"
	cmd := exec.Command(bin, "serve", "--config", cfgFile, "--addr", "127.0.0.1:0",
		"--database-url", database)
	if baseline {
		what = "agentstream bench relay"
		cmd = exec.Command(bin, "bench", "relay", "--addr", "127.0.0.1:0", "--model-url", modelURL, fmt.Sprintf("--h2c=%v", h2c))
	}
	cmd.Dir = dir
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AGENTSTREAM_") && !strings.HasPrefix(kv, "OPENAI_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "OPENAI_BASE_URL="+modelURL, "OPENAI_API_KEY=sk-bench")
	c := &child{cmd: cmd, dir: dir, log: &tailLog{wrote: make(chan struct{}, 1)}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = c.log, c.log
	if err := cmd.Start(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("starting %s (%s): %w", what, bin, err)
	}
	go func() {
		_ = cmd.Wait() // the outcome is cmd.ProcessState
		close(c.exited)
	}()
	timeout := time.NewTimer(childStartTimeout)
	defer timeout.Stop()
	for {
		if m := listeningRE.FindStringSubmatch(c.log.String()); m != nil {
			c.url = "http://" + m[1]
			return c, nil
		}
		var err error
		select {
		case <-c.log.wrote:
			continue
		case <-c.exited:
			err = fmt.Errorf("%s exited (%v) before listening", what, cmd.ProcessState)
		case <-timeout.C:
			err = fmt.Errorf("%s did not listen within %s", what, childStartTimeout)
		case <-ctx.Done():
			err = ctx.Err()
		}
		c.stop()
		return nil, fmt.Errorf("%w; its output:\n%s", err, c.log.String())
	}
}

// sharedStore is what several server children share; zero for a lone
// child with its own SQLite file and in-process event log.
type sharedStore struct {
	databaseURL, redisURL, redisPrefix string
	// apiKey is the children's one API key (auth.keys), which every
	// request of the load sends.
	apiKey string
}

// newBenchKey returns a random API key for the bench's children.
func newBenchKey() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b) // never fails (crypto/rand panics instead)
	return "bench-" + hex.EncodeToString(b)
}

// stop sends SIGTERM, waits for the exit (killing the process if it takes
// too long), removes the temporary directory and returns the exit status
// (-1 when killed).
func (c *child) stop() int {
	defer func() { _ = os.RemoveAll(c.dir) }()
	select {
	case <-c.exited:
		return c.cmd.ProcessState.ExitCode()
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
		return c.cmd.ProcessState.ExitCode()
	case <-time.After(childStopTimeout):
		_ = c.cmd.Process.Kill()
		<-c.exited
		return -1
	}
}

// tailLog keeps the start and the last bytes of a process's output;
// wrote gets a token after each write.
type tailLog struct {
	mu    sync.Mutex
	head  bytes.Buffer
	tail  []byte
	wrote chan struct{}
}

func (l *tailLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	n := len(p)
	if room := childLogKeep - l.head.Len(); room > 0 {
		k := min(room, len(p))
		l.head.Write(p[:k])
		p = p[k:]
	}
	if len(p) > 0 {
		l.tail = append(l.tail, p...)
		if over := len(l.tail) - childLogKeep; over > 0 {
			l.tail = append(l.tail[:0], l.tail[over:]...)
		}
	}
	l.mu.Unlock()
	select {
	case l.wrote <- struct{}{}:
	default:
	}
	return n, nil
}

func (l *tailLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.tail) == 0 {
		return l.head.String()
	}
	return l.head.String() + "\n[…]\n" + string(l.tail)
}
