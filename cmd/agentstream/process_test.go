//go:build unix

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/internal/sse"
	"github.com/agentstream/agentstream/sim"
)

// The tests in this file run the real `agentstream serve` binary as a
// separate process, send it real signals, and restart it on the same
// SQLite file.

// Generous bounds: the tests must hold on a loaded two-core machine, with
// a race-enabled child.
const (
	procStartTimeout = 30 * time.Second // to the "listening" log line
	procExitSlack    = 15 * time.Second // past the shutdown deadline
	streamTimeout    = 60 * time.Second // any one stream, start to end
	requestTimeout   = 30 * time.Second // any one plain request
)

var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// raceEnabled reports whether this test binary was built with -race; the
// server binary is then built with it too, so a data race in the child
// fails its exit code (66).
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// agentstreamBinary builds this package's binary once per test binary and
// returns its path.
func agentstreamBinary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		if binDir, binErr = os.MkdirTemp("", "agentstream-bin-"); binErr != nil {
			return
		}
		bin := filepath.Join(binDir, "agentstream")
		args := []string{"build", "-o", bin}
		if raceEnabled() {
			args = append(args, "-race")
		}
		args = append(args, ".")
		// go test puts its own GOROOT/bin first on PATH.
		out, err := exec.Command("go", args...).CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
			return
		}
		binPath = bin
	})
	if binErr != nil {
		t.Fatalf("building agentstream: %v", binErr)
	}
	return binPath
}

// procLog is a process's combined output, safe to read while it is
// written; wrote gets a token after each write.
type procLog struct {
	mu    sync.Mutex
	b     bytes.Buffer
	wrote chan struct{}
}

func (l *procLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.b.Write(p)
	l.mu.Unlock()
	select {
	case l.wrote <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (l *procLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// serveProc is one `agentstream serve` process.
type serveProc struct {
	t      testing.TB
	cmd    *exec.Cmd
	url    string // http://127.0.0.1:PORT
	log    *procLog
	exited chan struct{} // closed once Wait has returned
	client *http.Client  // plain requests, with a timeout
	stream *http.Client  // streams, bounded by their contexts
}

var listeningRE = regexp.MustCompile(`addr=http://(127\.0\.0\.1:\d+)`)

// startServe starts `agentstream serve` with the config file, on a free
// loopback port and the SQLite file db, against the OpenAI-compatible
// model at modelURL, and waits until it listens. The process is killed at
// cleanup if it is still running; its log is shown when the test failed.
func startServe(t testing.TB, configFile, db, modelURL string) *serveProc {
	t.Helper()
	return startServeEnv(t, configFile, db, modelURL, nil)
}

// startServeEnv is startServe with env added to the process's
// environment (a later value of a name wins) and args to its flags.
func startServeEnv(t testing.TB, configFile, db, modelURL string, env []string, args ...string) *serveProc {
	t.Helper()
	cmd := exec.Command(agentstreamBinary(t), append([]string{"serve", "--config", configFile, "--addr", "127.0.0.1:0", "--database-url", db}, args...)...)
	cmd.Dir = t.TempDir()
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AGENTSTREAM_") && !strings.HasPrefix(kv, "OPENAI_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "OPENAI_BASE_URL="+modelURL, "OPENAI_API_KEY=sk-test")
	cmd.Env = append(cmd.Env, env...)
	p := &serveProc{t: t, cmd: cmd, log: &procLog{wrote: make(chan struct{}, 1)}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting agentstream serve: %v", err)
	}
	go func() {
		_ = cmd.Wait() // the outcome is cmd.ProcessState
		close(p.exited)
	}()
	transport := &http.Transport{}
	p.client = &http.Client{Transport: transport, Timeout: requestTimeout}
	p.stream = &http.Client{Transport: transport}
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = cmd.Process.Kill()
			<-p.exited
		}
		transport.CloseIdleConnections()
		if t.Failed() {
			t.Logf("agentstream serve (pid %d) output:\n%s", cmd.Process.Pid, p.log.String())
		}
	})

	timeout := time.NewTimer(procStartTimeout)
	defer timeout.Stop()
	for {
		if m := listeningRE.FindStringSubmatch(p.log.String()); m != nil {
			p.url = "http://" + m[1]
			return p
		}
		select {
		case <-p.log.wrote:
		case <-p.exited:
			t.Fatalf("agentstream serve exited (%v) before listening:\n%s", cmd.ProcessState, p.log.String())
		case <-timeout.C:
			t.Fatalf("agentstream serve did not listen within %s:\n%s", procStartTimeout, p.log.String())
		}
	}
}

func (p *serveProc) signal(sig os.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("sending %v: %v", sig, err)
	}
}

// waitExit waits up to d for the process to end and returns its state.
func (p *serveProc) waitExit(d time.Duration) *os.ProcessState {
	p.t.Helper()
	select {
	case <-p.exited:
		return p.cmd.ProcessState
	case <-time.After(d):
		p.t.Fatalf("agentstream serve still running %s later", d)
		return nil
	}
}

// stopGracefully sends SIGTERM and expects a clean exit 0 within d.
func (p *serveProc) stopGracefully(d time.Duration) {
	p.t.Helper()
	p.signal(syscall.SIGTERM)
	if st := p.waitExit(d); st.ExitCode() != 0 {
		p.t.Fatalf("after SIGTERM: %v, want exit status 0", st)
	}
}

func (p *serveProc) do(method, path, body string) *http.Response {
	p.t.Helper()
	req, err := http.NewRequest(method, p.url+path, strings.NewReader(body))
	if err != nil {
		p.t.Fatal(err)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		p.t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp
}

// status sends a request without a body, with the given headers, and
// returns the answer's status (its body read and closed).
func (p *serveProc) status(method, path string, header map[string]string) int {
	p.t.Helper()
	req, err := http.NewRequest(method, p.url+path, nil)
	if err != nil {
		p.t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		p.t.Fatalf("%s %s: %v", method, path, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode
}

// json sends a request, expects status want, and decodes the answer into v.
func (p *serveProc) json(method, path, body string, want int, v any) {
	p.t.Helper()
	resp := p.do(method, path, body)
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		p.t.Fatalf("%s %s: reading the answer: %v", method, path, err)
	}
	if resp.StatusCode != want {
		p.t.Fatalf("%s %s: status %d, want %d: %s", method, path, resp.StatusCode, want, b)
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			p.t.Fatalf("%s %s: decoding %s: %v", method, path, b, err)
		}
	}
}

func (p *serveProc) newThread() agentstream.Thread {
	p.t.Helper()
	var th agentstream.Thread
	p.json("POST", "/v1/threads", `{}`, http.StatusCreated, &th)
	return th
}

func (p *serveProc) getRun(id string) agentstream.Run {
	p.t.Helper()
	var run agentstream.Run
	p.json("GET", "/v1/runs/"+id, "", http.StatusOK, &run)
	return run
}

func (p *serveProc) messages(threadID string) []agentstream.Message {
	p.t.Helper()
	var list struct {
		Data []agentstream.Message `json:"data"`
	}
	p.json("GET", "/v1/threads/"+threadID+"/messages", "", http.StatusOK, &list)
	return list.Data
}

// runStream is an open native stream and what has been read of it.
type runStream struct {
	t      testing.TB
	r      *sse.Reader
	runID  string
	events []sse.Event
	text   string // the message.delta texts joined
	deltas int
}

// openStream sends a request whose answer is a native stream; the stream
// is closed at cleanup, or after streamTimeout.
func (p *serveProc) openStream(method, path, body string, header map[string]string) *runStream {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), streamTimeout)
	p.t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, method, p.url+path, strings.NewReader(body))
	if err != nil {
		p.t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := p.stream.Do(req)
	if err != nil {
		p.t.Fatalf("%s %s: %v", method, path, err)
	}
	p.t.Cleanup(func() { _ = resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		p.t.Fatalf("%s %s: status %d: %s", method, path, resp.StatusCode, b)
	}
	return &runStream{t: p.t, r: sse.NewReader(resp.Body), runID: resp.Header.Get("X-Run-Id")}
}

// next reads one event; it returns the reader's error (io.EOF at a clean
// end) instead of an event.
func (s *runStream) next() (sse.Event, error) {
	ev, err := s.r.Next()
	if err != nil {
		return ev, err
	}
	s.events = append(s.events, ev)
	if ev.Type == string(agentstream.EventMessageDelta) {
		var d agentstream.MessageDeltaData
		if err := json.Unmarshal([]byte(ev.Data), &d); err != nil {
			s.t.Fatalf("message.delta %q: %v", ev.Data, err)
		}
		s.text += d.Delta
		s.deltas++
	}
	return ev, nil
}

// readUntil reads events until one satisfies done.
func (s *runStream) readUntil(what string, done func(sse.Event) bool) sse.Event {
	s.t.Helper()
	for {
		ev, err := s.next()
		if err != nil {
			s.t.Fatalf("stream of run %s: %v after %d events, before %s", s.runID, err, len(s.events), what)
		}
		if done(ev) {
			return ev
		}
	}
}

// readToEnd reads the rest of a stream that must end cleanly: its last
// event the only terminal one, then EOF. It returns the terminal event,
// decoded.
func (s *runStream) readToEnd() (sse.Event, agentstream.RunEndData) {
	s.t.Helper()
	for {
		_, err := s.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			s.t.Fatalf("stream of run %s broke after %d events: %v", s.runID, len(s.events), err)
		}
	}
	return s.checkEnd()
}

// checkEnd checks the events read: ids 1, 2, 3… (or on from the first),
// exactly one terminal event, the last. An end rebuilt from the store is
// its messages without ids, then the terminal event at the run's own id,
// past those before.
func (s *runStream) checkEnd() (sse.Event, agentstream.RunEndData) {
	s.t.Helper()
	if len(s.events) == 0 {
		s.t.Fatalf("stream of run %s: no events", s.runID)
	}
	prev, rebuilt := 0, false
	for i, ev := range s.events {
		if ev.ID == "" && ev.Type == string(agentstream.EventMessageCompleted) {
			rebuilt = true
			continue
		}
		id, err := strconv.Atoi(ev.ID)
		switch {
		case err != nil:
			s.t.Fatalf("stream of run %s: event %d has id %q", s.runID, i, ev.ID)
		case rebuilt && id <= prev, !rebuilt && prev > 0 && id != prev+1:
			s.t.Fatalf("stream of run %s: event %d has id %d after %d", s.runID, i, id, prev)
		case rebuilt && !agentstream.EventType(ev.Type).Terminal():
			s.t.Fatalf("stream of run %s: %s after a rebuilt end's messages", s.runID, ev.Type)
		}
		prev = id
		if agentstream.EventType(ev.Type).Terminal() != (i == len(s.events)-1) {
			s.t.Fatalf("stream of run %s: %s at %d of %d events; want one terminal event, last", s.runID, ev.Type, i+1, len(s.events))
		}
	}
	last := s.events[len(s.events)-1]
	var end agentstream.RunEndData
	if err := json.Unmarshal([]byte(last.Data), &end); err != nil {
		s.t.Fatalf("%s %q: %v", last.Type, last.Data, err)
	}
	if end.RunID != s.runID {
		s.t.Fatalf("%s names run %q, want %q", last.Type, end.RunID, s.runID)
	}
	return last, end
}

func isType(t agentstream.EventType) func(sse.Event) bool {
	return func(ev sse.Event) bool { return ev.Type == string(t) }
}

// writeConfig writes a YAML config file into dir.
func writeConfig(t testing.TB, dir, yaml string) string {
	t.Helper()
	file := filepath.Join(dir, "agentstream.yaml")
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// startSim starts a simulated model that answers with decide, closed at
// cleanup.
func startSim(t testing.TB, decide func(*sim.Request) sim.Behavior) *sim.Running {
	t.Helper()
	running, err := sim.Start("127.0.0.1:0", sim.Options{Decide: decide})
	if err != nil {
		t.Fatalf("starting the simulator: %v", err)
	}
	t.Cleanup(func() { _ = running.Close() })
	return running
}

// question is the user message a model request answers: the last one.
func question(r *sim.Request) string {
	for i := len(r.Messages) - 1; i >= 0; i-- {
		if r.Messages[i].Role == "user" {
			return r.Messages[i].Content
		}
	}
	return ""
}

// TestProcessSIGTERMDrainsRuns: SIGTERM to a serving process with two runs
// mid-stream. New runs get 503 while it drains; the run that can finish
// before http.shutdown_timeout completes; the one that cannot ends
// interrupted at the deadline, not before; both streams end with their
// terminal event, then a clean EOF; the process exits 0. Restarted on the
// same file, the server finds nothing to recover, and the store holds one
// run completed and one interrupted with its partial answer.
func TestProcessSIGTERMDrainsRuns(t *testing.T) {
	t.Parallel()
	const (
		deadline      = 2 * time.Second
		shortQuestion = "short: what is the current_time?" // a tool call, then an answer
		longQuestion  = "long: tell me everything"
	)
	// The short run's second model turn (after its tool call) waits for
	// release, so that run is certainly mid-stream when SIGTERM is sent
	// and certainly ends after it; once released it answers in
	// milliseconds. The long run would stream for 30s.
	release, done := make(chan struct{}), make(chan struct{})
	model := startSim(t, func(r *sim.Request) sim.Behavior {
		switch question(r) {
		case longQuestion:
			return sim.Behavior{Tokens: 3000, Pace: 10 * time.Millisecond}
		case shortQuestion:
			if r.LastMessage().Role == "tool" {
				select {
				case <-release:
				case <-done:
				}
				return sim.Behavior{Pace: 5 * time.Millisecond, TTFT: -1}
			}
		}
		return sim.Behavior{}
	})
	t.Cleanup(func() { close(done) }) // before the simulator closes

	dir := t.TempDir()
	db := filepath.Join(dir, "a.db")
	cfg := writeConfig(t, dir, fmt.Sprintf("http:\n  shutdown_timeout: %s\n", deadline))
	p := startServe(t, cfg, db, model.URL())

	longTh, shortTh := p.newThread(), p.newThread()
	long := p.openStream("POST", "/v1/threads/"+longTh.ID+"/runs", `{"input": "`+longQuestion+`"}`, nil)
	for long.deltas < 3 {
		long.readUntil("the long run's text", isType(agentstream.EventMessageDelta))
	}
	short := p.openStream("POST", "/v1/threads/"+shortTh.ID+"/runs", `{"input": "`+shortQuestion+`"}`, nil)
	short.readUntil("the short run's tool result", isType(agentstream.EventToolResult))

	sent := time.Now()
	p.signal(syscall.SIGTERM)

	// Draining: a new run is refused with 503 and Retry-After. It is
	// asked on the long run's thread, so one that arrives before the
	// signal is handled is a 409 that writes nothing.
	for poll := time.Now(); ; time.Sleep(10 * time.Millisecond) {
		resp := p.do("POST", "/v1/threads/"+longTh.ID+"/runs", `{"input": "late"}`)
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable {
			var e struct {
				Error struct{ Code agentstream.Code } `json:"error"`
			}
			if json.Unmarshal(b, &e) != nil || e.Error.Code != agentstream.CodeUnavailable || resp.Header.Get("Retry-After") == "" {
				t.Fatalf("503 while draining: Retry-After %q, body %s", resp.Header.Get("Retry-After"), b)
			}
			break
		}
		if resp.StatusCode != http.StatusConflict {
			t.Fatalf("a new run on a busy thread during SIGTERM: status %d: %s", resp.StatusCode, b)
		}
		if time.Since(poll) > 10*time.Second {
			t.Fatal("new runs were still accepted 10s after SIGTERM")
		}
	}
	refused := time.Since(sent)

	close(release)
	shortEnd, shortData := short.readToEnd()
	shortDone := time.Since(sent)
	if shortEnd.Type != string(agentstream.EventRunCompleted) || shortData.Status != agentstream.RunCompleted {
		t.Fatalf("the short run ended %s %+v, want run.completed", shortEnd.Type, shortData)
	}
	if short.text == "" {
		t.Fatal("the short run streamed no answer after SIGTERM")
	}

	longEnd, longData := long.readToEnd()
	interrupted := time.Since(sent)
	if longEnd.Type != string(agentstream.EventRunInterrupted) || longData.Status != agentstream.RunInterrupted ||
		longData.Error == nil || longData.Error.Code != agentstream.CodeInterrupted {
		t.Fatalf("the long run ended %s %+v, want run.interrupted", longEnd.Type, longData)
	}
	// The deadline starts when the process handles the signal, after it
	// was sent: run.interrupted cannot come sooner than deadline.
	if interrupted < deadline || interrupted > deadline+10*time.Second {
		t.Fatalf("run.interrupted %s after SIGTERM, want at the %s deadline", interrupted, deadline)
	}

	st := p.waitExit(deadline + procExitSlack - time.Since(sent))
	exited := time.Since(sent)
	if st.ExitCode() != 0 {
		t.Fatalf("after SIGTERM: %v, want exit status 0", st)
	}
	t.Logf("after SIGTERM: 503 at %s, short run completed at %s, long run interrupted at %s (%d deltas), exit 0 at %s",
		refused.Round(time.Millisecond), shortDone.Round(time.Millisecond), interrupted.Round(time.Millisecond),
		long.deltas, exited.Round(time.Millisecond))

	// Restarted on the same file: nothing was left running, and the store
	// has what the streams said.
	p2 := startServe(t, cfg, db, model.URL())
	if strings.Contains(p2.log.String(), "marked interrupted") {
		t.Fatalf("a clean shutdown left runs to recover:\n%s", p2.log.String())
	}
	if run := p2.getRun(short.runID); run.Status != agentstream.RunCompleted || run.Error != nil || run.FinishedAt == nil {
		t.Fatalf("the short run after a restart: %+v", run)
	}
	if run := p2.getRun(long.runID); run.Status != agentstream.RunInterrupted || run.Error == nil ||
		run.Error.Code != agentstream.CodeInterrupted || run.FinishedAt == nil {
		t.Fatalf("the long run after a restart: %+v", run)
	}
	msgs := p2.messages(longTh.ID)
	if len(msgs) != 2 || msgs[0].Role != agentstream.RoleUser || msgs[0].Content != longQuestion ||
		msgs[1].Role != agentstream.RoleAssistant || msgs[1].Status != agentstream.MessagePartial || msgs[1].RunID != long.runID {
		t.Fatalf("the long run's thread: %+v", msgs)
	}
	// Every delta the run produced went to the log before its terminal
	// event, so the saved partial answer is exactly what the stream said.
	if msgs[1].Content == "" || msgs[1].Content != long.text {
		t.Fatalf("the interrupted run's partial answer is %d bytes, the stream sent %d:\nstored   %q\nstreamed %q",
			len(msgs[1].Content), len(long.text), msgs[1].Content, long.text)
	}
	msgs = p2.messages(shortTh.ID)
	if len(msgs) != 4 || msgs[0].Content != shortQuestion || len(msgs[1].ToolCalls) != 1 || msgs[2].Role != agentstream.RoleTool ||
		msgs[3].Role != agentstream.RoleAssistant || msgs[3].Status != agentstream.MessageComplete || msgs[3].Content != short.text {
		t.Fatalf("the short run's thread (streamed %q): %+v", short.text, msgs)
	}
	p2.stopGracefully(procExitSlack)
}

// TestProcessSIGKILLRecovery: SIGKILL mid-answer, then a restart on the
// same file. The run is interrupted; the thread keeps the question and the
// last checkpoint of the answer, a non-empty prefix of what the stream
// delivered; the run's events are answered from the store, ending with
// run.interrupted; the thread takes new runs.
func TestProcessSIGKILLRecovery(t *testing.T) {
	t.Parallel()
	const (
		interval      = 200 * time.Millisecond
		tokens        = 60 // streamed at 10ms: three checkpoint intervals
		crashQuestion = "crash: tell me a long story"
	)
	// The answer streams `tokens` tokens, then the upstream stalls: the
	// run is still running, and every checkpoint the process can have
	// written holds text the stream has already delivered.
	model := startSim(t, func(r *sim.Request) sim.Behavior {
		if question(r) == crashQuestion {
			return sim.Behavior{Tokens: 1000, Pace: 10 * time.Millisecond, Fault: sim.FaultStall, FaultAfter: tokens}
		}
		return sim.Behavior{Tokens: 5, Pace: -1, TTFT: -1, Fault: sim.FaultNone}
	})
	dir := t.TempDir()
	db := filepath.Join(dir, "a.db")
	cfg := writeConfig(t, dir, fmt.Sprintf("runs:\n  checkpoint_interval: %s\n", interval))
	p := startServe(t, cfg, db, model.URL())

	th := p.newThread()
	s := p.openStream("POST", "/v1/threads/"+th.ID+"/runs", `{"input": "`+crashQuestion+`"}`, nil)
	first := s.readUntil("the first delta", isType(agentstream.EventMessageDelta))
	began := time.Now()
	for s.deltas < tokens {
		s.readUntil("the stall", isType(agentstream.EventMessageDelta))
	}
	streamed := time.Since(began)
	// The checkpoint is visible through the API while the run goes on.
	for poll := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		msgs := p.messages(th.ID)
		if len(msgs) == 2 && msgs[1].Status == agentstream.MessagePartial && msgs[1].Content != "" {
			break
		}
		if time.Since(poll) > 10*time.Second {
			t.Fatalf("no checkpoint of the answer 10s after %d deltas: %+v", s.deltas, msgs)
		}
	}
	if run := p.getRun(s.runID); run.Status != agentstream.RunRunning {
		t.Fatalf("before the kill the run is %s, want running", run.Status)
	}

	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	if st := p.waitExit(procExitSlack); st.Success() {
		t.Fatalf("SIGKILL: %v", st)
	}
	// A killed process sends no terminal event: the stream breaks.
	// Whatever it had sent still counts as delivered.
	for {
		ev, err := s.next()
		if err == nil && agentstream.EventType(ev.Type).Terminal() {
			t.Fatalf("a killed process sent %s", ev.Type)
		}
		if errors.Is(err, io.EOF) {
			t.Fatal("the stream of a killed process ended cleanly, as if the run had ended")
		}
		if err != nil {
			break
		}
	}
	delivered := s.text
	lastID, _ := strconv.Atoi(s.events[len(s.events)-1].ID)

	p2 := startServe(t, cfg, db, model.URL())
	if log := p2.log.String(); !strings.Contains(log, "marked interrupted") || !strings.Contains(log, "runs=1") {
		t.Fatalf("the restart does not say it recovered one run:\n%s", log)
	}
	run := p2.getRun(s.runID)
	if run.Status != agentstream.RunInterrupted || run.Error == nil || run.Error.Code != agentstream.CodeInterrupted || run.FinishedAt == nil {
		t.Fatalf("the killed run after a restart: %+v", run)
	}
	msgs := p2.messages(th.ID)
	if len(msgs) != 2 || msgs[0].Role != agentstream.RoleUser || msgs[0].Content != crashQuestion || msgs[0].Status != agentstream.MessageComplete ||
		msgs[1].Role != agentstream.RoleAssistant || msgs[1].Status != agentstream.MessagePartial || msgs[1].RunID != s.runID {
		t.Fatalf("the killed run's thread: %+v", msgs)
	}
	partial := msgs[1].Content
	if partial == "" || !strings.HasPrefix(delivered, partial) {
		t.Fatalf("the saved partial answer is not a non-empty prefix of the %d bytes streamed:\nstored   %q\nstreamed %q",
			len(delivered), partial, delivered)
	}
	t.Logf("streamed %d deltas (%d bytes) in %s after the first (id %s); the last checkpoint kept %d bytes",
		s.deltas, len(delivered), streamed.Round(time.Millisecond), first.ID, len(partial))

	// The run's events died with the process; the new one answers them
	// from the store: the saved answer as message.completed (without an
	// id), then run.interrupted, whose id the first reader fixes past any
	// id a reader of the dead process can have seen: every reader gets it,
	// under the same id.
	endID := ""
	for _, after := range []int{0, lastID} {
		var header map[string]string
		if after > 0 {
			header = map[string]string{"Last-Event-ID": strconv.Itoa(after)}
		}
		r := p2.openStream("GET", "/v1/runs/"+s.runID+"/events", "", header)
		end, data := r.readToEnd()
		if end.Type != string(agentstream.EventRunInterrupted) || data.Status != agentstream.RunInterrupted ||
			data.Error == nil || data.Error.Code != agentstream.CodeInterrupted {
			t.Fatalf("events after %d end with %s %+v, want run.interrupted", after, end.Type, data)
		}
		var completed agentstream.MessageCompletedData
		if len(r.events) != 2 || r.events[0].Type != string(agentstream.EventMessageCompleted) || r.events[0].ID != "" ||
			json.Unmarshal([]byte(r.events[0].Data), &completed) != nil || completed.Content != partial {
			t.Fatalf("events after %d from the store: %+v, want the saved answer without an id, then run.interrupted", after, r.events)
		}
		if id, err := strconv.Atoi(end.ID); err != nil || id <= lastID || endID != "" && end.ID != endID {
			t.Fatalf("events after %d end at id %q; want one id for every reader, past %d (the last streamed), first %q", after, end.ID, lastID, endID)
		}
		endID = end.ID
	}
	if status := p2.status("GET", "/v1/runs/"+s.runID+"/events", map[string]string{"Last-Event-ID": endID}); status != http.StatusNoContent {
		t.Fatalf("a reader at the end after the restart: %d, want 204", status)
	}

	// The recovered thread takes new runs.
	again := p2.openStream("POST", "/v1/threads/"+th.ID+"/runs", `{"input": "again"}`, nil)
	if end, _ := again.readToEnd(); end.Type != string(agentstream.EventRunCompleted) {
		t.Fatalf("a new run on the recovered thread ended %s", end.Type)
	}
	p2.stopGracefully(procExitSlack)
}
