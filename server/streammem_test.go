package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentstream/agentstream/config"
	"github.com/agentstream/agentstream/sim"
)

// loadChildEnv, set in a child of the test binary, makes it the load of
// BenchmarkStreamMemory (a simulator and the streaming clients) instead of
// running tests: what the benchmark measures is then the server alone.
const loadChildEnv = "AGENTSTREAM_STREAMMEM_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(loadChildEnv) != "" {
		os.Exit(loadChild(os.Stdin, os.Stdout))
	}
	os.Exit(m.Run())
}

// BenchmarkStreamMemory measures what one open stream costs the server:
// a real server (in this process, the shipped settings but
// runs.max_concurrent) streams runs of a simulated model to N HTTP/1.1
// clients, both in a child process so that neither counts. Once every
// stream has its first token (the model paces ten tokens a second; the
// first streams have some tens by then), the process's goroutine stacks, live heap (after
// two collections) and goroutines, minus the same figures before the
// streams opened, are divided by N: stack-B/stream, heap-B/stream,
// goroutines/stream. A change that grows a frame of a goroutine that
// waits for the whole stream shows in stack-B/stream. The streams then
// run on for 8 seconds (the model paces ten tokens a second), after which
// the stacks, read before any collection, are flowing-stack-B/stream: a
// stack the collections halved that a token's way (the model's chunk
// parsed, appended, written to the client) needs grown again shows
// there, not in stack-B/stream. The live heap's growth over those 8 s, divided by the message.delta events the
// clients read meanwhile, is heap-B/token: what each token streamed
// keeps for the rest of its run (its event in the run's log, the answer
// gathered so far).
//
// The model is reached over HTTP/2 (as OpenAI's API and the bench) and
// over HTTP/1.1 (a connection per stream, as a local vLLM or Ollama).
// AGENTSTREAM_STREAMMEM_N sets N (default 300);
// AGENTSTREAM_STREAMMEM_DUMP=FILE writes the goroutines, grouped by stack,
// while the streams are open (the last measurement's);
// AGENTSTREAM_STREAMMEM_HEAP=FILE writes a heap profile then, sampled
// every 512 bytes (go tool pprof -sample_index=inuse_space FILE), and
// another to FILE.later after the streams ran on (-diff_base FILE shows
// what their tokens keep).
func BenchmarkStreamMemory(b *testing.B) {
	n := 300
	if v := os.Getenv("AGENTSTREAM_STREAMMEM_N"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			b.Fatalf("AGENTSTREAM_STREAMMEM_N=%q: want a number of streams", v)
		}
	}
	if os.Getenv("AGENTSTREAM_STREAMMEM_HEAP") != "" {
		runtime.MemProfileRate = 512
	}
	for _, upstream := range []struct {
		name string
		h2c  bool
	}{{"upstream=h2c", true}, {"upstream=http1", false}} {
		b.Run(upstream.name, func(b *testing.B) {
			var st streamMemory
			for range b.N {
				st = measureStreams(b, n, upstream.h2c)
			}
			b.ReportMetric(st.stack, "stack-B/stream")
			b.ReportMetric(st.stackFlowing, "flowing-stack-B/stream")
			b.ReportMetric(st.heap, "heap-B/stream")
			b.ReportMetric(st.goroutines, "goroutines/stream")
			b.ReportMetric(st.perToken, "heap-B/token")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// streamMemory is what one open stream adds, in bytes and goroutines,
// and the live heap one more token adds.
type streamMemory struct{ stack, stackFlowing, heap, goroutines, perToken float64 }

// tokensWait is how long the streams run on before the second
// measurement: some 80 tokens each, over 20,000 in all, so that the
// heap's noise (a few hundred KB from one measurement to the next) is
// some bytes per token, and a run's log grows through several of the
// steps in which it takes memory.
const tokensWait = 8 * time.Second

// measureStreams opens n streams on a new server and measures them.
func measureStreams(b *testing.B, n int, h2c bool) streamMemory {
	b.Helper()
	child := startLoad(b)
	e := startServer(b, child.simURL, func(c *config.Config) {
		c.Runs.MaxConcurrent = n
		c.OpenAI.H2C = h2c
	}, slog.DiscardHandler)
	before := memNow()
	child.open(e.url, n)
	after := memNow()
	tokens0 := child.tokens()
	if path := os.Getenv("AGENTSTREAM_STREAMMEM_DUMP"); path != "" {
		writeProfile(b, "goroutine", 1, path)
	}
	if path := os.Getenv("AGENTSTREAM_STREAMMEM_HEAP"); path != "" {
		writeProfile(b, "heap", 0, path)
	}
	time.Sleep(tokensWait)
	flowing := stacksNow()
	later := memNow()
	tokens := child.tokens() - tokens0
	if path := os.Getenv("AGENTSTREAM_STREAMMEM_HEAP"); path != "" {
		writeProfile(b, "heap", 0, path+".later")
	}
	child.stop()
	per := func(a, b uint64) float64 { return (float64(a) - float64(b)) / float64(n) }
	return streamMemory{
		stack:        per(after.stack, before.stack),
		stackFlowing: per(flowing, before.stack),
		heap:         per(after.heap, before.heap),
		goroutines:   per(after.goroutines, before.goroutines),
		perToken:     (float64(later.heap) - float64(after.heap)) / float64(tokens),
	}
}

// writeProfile writes the profile name to path.
func writeProfile(b testing.TB, name string, debug int, path string) {
	b.Helper()
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	if err := pprof.Lookup(name).WriteTo(f, debug); err != nil {
		b.Fatal(err)
	}
}

type memFigures struct{ stack, heap, goroutines uint64 }

// stacksNow reads the goroutine stacks' bytes without collecting first:
// after the streams ran on, a stack that memNow's collections halved and
// that had to grow again as a token passed (the deepest point of a
// token's way is deeper than the halved stack takes) is counted grown.
func stacksNow() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/stacks:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// memNow collects twice (a stack shrinks at a collection when under a
// quarter of it is in use; the second one sees the first's result) and
// reads the stacks, the heap marked live, and the goroutines.
func memNow() memFigures {
	runtime.GC()
	runtime.GC()
	s := []metrics.Sample{
		{Name: "/memory/classes/heap/stacks:bytes"},
		{Name: "/gc/heap/live:bytes"},
		{Name: "/sched/goroutines:goroutines"},
	}
	metrics.Read(s)
	return memFigures{stack: s[0].Value.Uint64(), heap: s[1].Value.Uint64(), goroutines: s[2].Value.Uint64()}
}

// loadProc is a running load child.
type loadProc struct {
	b      testing.TB
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    *bufio.Scanner
	simURL string
}

// startLoad starts a load child and reads its simulator's URL.
func startLoad(b testing.TB) *loadProc {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), loadChildEnv+"=1")
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatalf("starting the load child: %v", err)
	}
	p := &loadProc{b: b, cmd: cmd, in: in, out: bufio.NewScanner(out)}
	b.Cleanup(p.stop)
	p.simURL = p.expect("sim ")
	return p
}

// expect reads the child's next line, which must start with prefix, and
// returns the rest.
func (p *loadProc) expect(prefix string) string {
	p.b.Helper()
	if !p.out.Scan() {
		p.b.Fatalf("the load child ended without %q: %v", prefix, p.out.Err())
	}
	line := p.out.Text()
	rest, ok := strings.CutPrefix(line, prefix)
	if !ok {
		p.b.Fatalf("the load child said %q, not %q", line, prefix)
	}
	return rest
}

// open has the child open n streams on the server at url and returns
// once each has had its first token.
func (p *loadProc) open(url string, n int) {
	p.b.Helper()
	if _, err := fmt.Fprintf(p.in, "open %d %s\n", n, url); err != nil {
		p.b.Fatal(err)
	}
	p.expect("ready")
}

// tokens returns how many message.delta events the child's streams have
// read so far, the first of each included.
func (p *loadProc) tokens() int64 {
	p.b.Helper()
	if _, err := fmt.Fprintln(p.in, "tokens"); err != nil {
		p.b.Fatal(err)
	}
	n, err := strconv.ParseInt(p.expect("tokens "), 10, 64)
	if err != nil {
		p.b.Fatal(err)
	}
	if n <= 0 {
		p.b.Fatalf("the streams read %d tokens", n)
	}
	return n
}

// stop ends the child: its clients and simulator go with it.
func (p *loadProc) stop() {
	if p.in == nil {
		return
	}
	_ = p.in.Close()
	p.in = nil
	done := make(chan struct{})
	go func() {
		_ = p.cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
}

// loadChild is the load child's main: it starts a simulator that paces
// ten tokens a second and says "sim URL"; on "open N URL" it opens N
// streams on the agentstream server at URL, one HTTP/1.1 connection each,
// and says "ready" once each has had a message.delta (or "error …" and
// ends); on "tokens" it says "tokens N", the message.delta events its
// streams have read; it ends when its input does.
func loadChild(in io.Reader, out io.Writer) int {
	running, err := sim.Start("127.0.0.1:0", sim.Options{Tokens: 1000, Pace: 100 * time.Millisecond, TTFT: -1, Record: -1})
	if err != nil {
		_, _ = fmt.Fprintf(out, "error starting the simulator: %v\n", err)
		return 1
	}
	defer func() { _ = running.Close() }()
	_, _ = fmt.Fprintf(out, "sim %s\n", running.URL())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	var deltas atomic.Int64
	lines := bufio.NewScanner(in)
	for lines.Scan() {
		if lines.Text() == "tokens" {
			_, _ = fmt.Fprintf(out, "tokens %d\n", deltas.Load())
			continue
		}
		var n int
		var url string
		if _, err := fmt.Sscanf(lines.Text(), "open %d %s", &n, &url); err != nil {
			_, _ = fmt.Fprintf(out, "error: %q is no command\n", lines.Text())
			return 1
		}
		if err := openStreams(ctx, client, url, n, &deltas); err != nil {
			_, _ = fmt.Fprintf(out, "error: %v\n", err)
			return 1
		}
		_, _ = fmt.Fprintln(out, "ready")
	}
	return 0
}

// openStreams starts n runs on new threads, 16 at a time, and returns
// once each stream has had its first token; the streams are then read on
// until ctx ends, their message.delta events counted in deltas.
func openStreams(ctx context.Context, client *http.Client, url string, n int, deltas *atomic.Int64) error {
	places := make(chan struct{}, 16)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range n {
		places <- struct{}{}
		wg.Go(func() {
			defer func() { <-places }()
			body, err := openStream(ctx, client, url)
			errs <- err
			if err == nil {
				deltas.Add(1)
				go func() {
					defer func() { _ = body.Close() }()
					lines := bufio.NewScanner(body)
					for lines.Scan() {
						if lines.Text() == "event: message.delta" {
							deltas.Add(1)
						}
					}
				}()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// openStream starts a run on a new thread and reads its stream up to its
// first message.delta, returning the rest of the body.
func openStream(ctx context.Context, client *http.Client, url string) (io.ReadCloser, error) {
	resp, err := post(ctx, client, url+"/v1/threads", `{}`)
	if err != nil {
		return nil, err
	}
	var t struct{ ID string }
	err = json.NewDecoder(resp.Body).Decode(&t)
	_ = resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusCreated {
		return nil, fmt.Errorf("creating a thread: status %d, %v", resp.StatusCode, err)
	}
	resp, err = post(ctx, client, url+"/v1/threads/"+t.ID+"/runs", `{"input":"hello"}`)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		_ = resp.Body.Close()
		return nil, fmt.Errorf("starting a run: status %d", resp.StatusCode)
	}
	br := bufio.NewReader(resp.Body)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			_ = resp.Body.Close()
			return nil, fmt.Errorf("the stream ended before its first token: %w", err)
		}
		if line == "event: message.delta\n" {
			return struct {
				io.Reader
				io.Closer
			}{br, resp.Body}, nil
		}
	}
}

func post(ctx context.Context, client *http.Client, url, body string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, errors.Join(errors.New("a request to the server"), err)
	}
	return resp, nil
}
