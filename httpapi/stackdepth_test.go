//go:build !race

// The race detector's instrumentation changes every frame's size: the
// budgets below are the normal build's.

package httpapi

import (
	"io"
	"net/http"
	"net/http/httptest"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/openai"
)

// Budgets of the stack an inline run's goroutine uses in the frames this
// module has a say in: from the API's handler (bodyDeadline) down to the
// read of the model's response body (openai's). BENCHMARKS.md, "The
// streaming goroutine in an 8 KiB stack", has the figures.
const (
	// waitBudget: while it waits for the model. net/http adds 1,184
	// bytes above (conn.serve, serverHandler, goexit and the park) and,
	// below, 408 with an HTTP/2 upstream and 1,272 with HTTP/1.1; Go
	// halves a stack at a collection only when under 3,296 bytes of it
	// are in use (a quarter of 16 KiB, less 800): 3,296 − 1,184 − 1,272
	// = 840 at most with HTTP/1.1 (1,704 with HTTP/2). The frames use
	// some 840 today, and BenchmarkStreamMemory in ../server shows the
	// HTTP/1.1 stream's stack halved, just (this arithmetic is a few
	// tens of bytes conservative: the frames sized from the binary leave
	// ~36). So the budget leaves ~30 bytes: a frame under the wait that
	// grows by more sends HTTP/1.1 streams back to 16 KiB and fails here,
	// to be looked at, not let through (the SSE reader's pooled buffers,
	// first merged with a 152-byte frame under the wait, took 160 more).
	waitBudget = 870
	// writeBudget: at the deepest point of a token's way, the write of
	// its event to the client. net/http adds 1,184 above and about 920
	// below (the flush down to the write system call); a stack of 8 KiB
	// grows when a frame would go within 928 bytes of its end: 8,192 −
	// 928 − 1,184 − 920 = 5,160 at most. The frames use some 2,540 today.
	writeBudget = 3400
)

// TestInlineStackDepth: an inline run's goroutine, streaming a real
// openai.Model's answer to an API client, waits for the model within
// waitBudget bytes of stack and writes each token within writeBudget;
// see there. The addresses of a local at the top of the goroutine, at the
// model's body read and at the client's writes give the depths; the
// goroutine's stack is grown first and the collector is off, so that the
// stack does not move meanwhile.
func TestInlineStackDepth(t *testing.T) {
	// Not parallel: it turns the collector off for the process.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	body := &heldBody{
		chunks: []string{
			`data: {"choices":[{"index":0,"delta":{"content":"hello"}}]}` + "\n\n",
			`data: {"choices":[{"index":0,"delta":{"content":" world"}}]}` + "\n\n",
		},
		waiting: make(chan uintptr, 1),
		release: make(chan struct{}),
		end:     `data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}` + "\n\ndata: [DONE]\n\n",
	}
	model, err := openai.New(openai.Config{
		BaseURL: "http://model.test/v1",
		HTTPClient: &http.Client{Transport: roundTripper(func(r *http.Request) (*http.Response, error) {
			_ = r.Body.Close()
			return &http.Response{StatusCode: http.StatusOK, Header: http.Header{"Content-Type": {"text/event-stream"}}, Body: body, Request: r}, nil
		})},
	})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixtureWith(t, Options{}, nil, model)
	now := time.Now().UTC()
	th := agentstream.Thread{ID: agentstream.NewID("thr_"), UserID: LocalUser, CreatedAt: now, UpdatedAt: now}
	if err := f.store.CreateThread(t.Context(), th); err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/v1/threads/"+th.ID+"/runs", strings.NewReader(`{"input":"hi"}`))
	req.Host = "127.0.0.1"
	req.Header.Set("Content-Type", "application/json")
	w := &deepWriter{ResponseRecorder: httptest.NewRecorder()}
	h := f.srv.Handler()

	tops := make(chan uintptr, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		growStack()
		var top byte
		w.setTop(uintptr(unsafe.Pointer(&top)))
		tops <- uintptr(unsafe.Pointer(&top))
		h.ServeHTTP(w, req)
	}()
	top := <-tops
	var waiting uintptr
	select {
	case waiting = <-body.waiting:
	case <-time.After(10 * time.Second):
		t.Fatal("the model's body was not read to its wait")
	}
	close(body.release)
	<-done
	if !strings.Contains(w.Body.String(), "run.completed") || !strings.Contains(w.Body.String(), " world") {
		t.Fatalf("the stream did not end as it should: %q", w.Body.String())
	}
	wait, write := int(top-waiting), int(top-w.deepest())
	t.Logf("stack in use below the handler: %d bytes waiting for the model (budget %d), %d at the deepest write (budget %d)", wait, waitBudget, write, writeBudget)
	if wait <= 0 || wait > waitBudget {
		t.Errorf("an inline run waits for the model with %d bytes of stack in the module's frames, over the budget of %d: a frame under the wait grew (see waitBudget)", wait, waitBudget)
	}
	if write <= wait || write > writeBudget {
		t.Errorf("an inline run writes a token with %d bytes of stack in the module's frames, over the budget of %d (see writeBudget)", write, writeBudget)
	}
}

// growStack uses a 64 KiB frame, so that the calling goroutine's stack
// has grown past what it uses next and is not moved (copied) by growing.
//
//go:noinline
func growStack() byte {
	var b [64 << 10]byte
	for i := range b {
		b[i] = byte(i)
	}
	return b[len(b)-1]
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// heldBody is a model's streamed answer: its chunks, then, once read, a
// wait (the address of a local there goes to waiting) until release, then
// end.
type heldBody struct {
	chunks  []string
	waiting chan uintptr
	release chan struct{}
	end     string
	held    bool
}

func (b *heldBody) Read(p []byte) (int, error) {
	if len(b.chunks) > 0 {
		n := copy(p, b.chunks[0])
		b.chunks[0] = b.chunks[0][n:]
		if b.chunks[0] == "" {
			b.chunks = b.chunks[1:]
		}
		return n, nil
	}
	if !b.held {
		b.held = true
		var here byte
		b.waiting <- uintptr(unsafe.Pointer(&here))
		<-b.release
	}
	if b.end == "" {
		return 0, io.EOF
	}
	n := copy(p, b.end)
	b.end = b.end[n:]
	return n, nil
}

func (b *heldBody) Close() error { return nil }

// deepWriter is a client's ResponseWriter that notes the lowest address
// of the stack its writes and flushes ran at on the goroutine whose top
// is top (a write on another goroutine, a heartbeat's, is not noted).
type deepWriter struct {
	*httptest.ResponseRecorder
	mu       sync.Mutex
	top, low uintptr
}

func (w *deepWriter) setTop(top uintptr) {
	w.mu.Lock()
	w.top = top
	w.mu.Unlock()
}

func (w *deepWriter) note(at uintptr) {
	w.mu.Lock()
	if at < w.top && w.top-at < 64<<10 && (w.low == 0 || at < w.low) {
		w.low = at
	}
	w.mu.Unlock()
}

func (w *deepWriter) deepest() uintptr {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.low
}

func (w *deepWriter) Write(p []byte) (int, error) {
	var here byte
	w.note(uintptr(unsafe.Pointer(&here)))
	return w.ResponseRecorder.Write(p)
}

func (w *deepWriter) Flush() {
	var here byte
	w.note(uintptr(unsafe.Pointer(&here)))
	w.ResponseRecorder.Flush()
}
