//go:build unix

package server_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/config"
	"github.com/agentstream/agentstream/sim"
)

// stalledReader opens GET /v1/runs/{id}/events on a raw connection and
// never reads: its socket buffers fill and the server's writes block.
func stalledReader(t testing.TB, addr, runID string) net.Conn {
	t.Helper()
	conn := smallBufferConn(t, addr)
	if _, err := fmt.Fprintf(conn, "GET /v1/runs/%s/events HTTP/1.1\r\nHost: %s\r\n\r\n", runID, addr); err != nil {
		t.Fatal(err)
	}
	return conn
}

// smallBufferConn dials addr with a small receive buffer, so the
// server's writes block early once nothing is read.
func smallBufferConn(t testing.TB, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var err error
		if cerr := c.Control(func(fd uintptr) {
			err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		}); cerr != nil {
			return cerr
		}
		return err
	}}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// TestStalledReaders: during a long run, readers that never read do not
// slow the run, the event log stays within its configured caps, the heap
// does not grow with what the stalled readers missed, and each stalled
// reader is disconnected after http.stall_timeout. Not parallel: it
// measures the process's heap.
func TestStalledReaders(t *testing.T) {
	const (
		words    = 1500
		wordSize = 4 << 10
		readers  = 20
		maxRun   = 1 << 20
		maxTotal = 2 << 20
		pace     = 2 * time.Millisecond
		stall    = time.Second
	)
	// 6 MB of answer in 4 KiB words over 3 s: more than the kernel buffers
	// of a loopback connection hold, so the stalled readers' writes block
	// well before the run ends, for longer than the stall timeout.
	text := strings.Repeat(strings.Repeat("x", wordSize-1)+" ", words)
	e := start(t, sim.Options{Decide: func(*sim.Request) sim.Behavior { return sim.Behavior{Text: text, Pace: pace} }}, func(c *config.Config) {
		c.EventLog.MaxRunBytes = maxRun
		c.EventLog.MaxTotalBytes = maxTotal
		c.HTTP.StallTimeout = stall
	})
	addr := strings.TrimPrefix(e.url, "http://")

	// The same run with a reader that keeps up: the time to beat.
	base := e.newThread(`{}`)
	baseResp := e.do("POST", "/v1/threads/"+base.ID+"/runs", `{"input":"hello"}`)
	if _, err := io.Copy(io.Discard, baseResp.Body); err != nil {
		t.Fatalf("reading the baseline run: %v", err)
	}
	baseline := waitRunEnd(t, e, baseResp.Header.Get("X-Run-Id"))
	if baseline.Status != agentstream.RunCompleted {
		t.Fatalf("baseline run %+v", baseline)
	}
	baseTook := baseline.FinishedAt.Sub(*baseline.StartedAt)

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	// The run's own stream reads its first event, then stops reading, as
	// do readers more that join it.
	th := e.newThread(`{}`)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	first, resp := e.openStream(ctx, "POST", "/v1/threads/"+th.ID+"/runs", `{"input":"hello"}`, nil)
	readN(t, first, 1)
	runID := resp.Header.Get("X-Run-Id")
	conns := make([]net.Conn, readers)
	for i := range conns {
		conns[i] = stalledReader(t, addr, runID)
	}

	// Sample the log's size and the heap until the run ends.
	var (
		mu                 sync.Mutex
		peakLog            int64
		peakHeap           uint64
		stopSampling       = make(chan struct{})
		samplingDone       = make(chan struct{})
		sampleLogAndMemory = func() {
			_, b := e.srv.EventLogStats()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			mu.Lock()
			peakLog, peakHeap = max(peakLog, b), max(peakHeap, ms.HeapAlloc)
			mu.Unlock()
		}
	)
	go func() {
		defer close(samplingDone)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			sampleLogAndMemory()
			select {
			case <-stopSampling:
				return
			case <-tick.C:
			}
		}
	}()

	run := waitRunEnd(t, e, runID)
	close(stopSampling)
	<-samplingDone
	if run.Status != agentstream.RunCompleted {
		t.Fatalf("run with stalled readers ended %+v", run)
	}
	took := run.FinishedAt.Sub(*run.StartedAt)
	t.Logf("%d words of %d bytes: %v with a reader that keeps up, %v with %d stalled readers; peak log %d bytes (caps %d per run, %d total); heap %d → peak %d bytes",
		words, wordSize, baseTook, took, readers+1, peakLog, maxRun, maxTotal, before.HeapAlloc, peakHeap)
	// Generous: the point is that the run does not wait for its readers,
	// which would make it take the stall timeout at least.
	if took > 3*baseTook+stall {
		t.Errorf("the run took %v with stalled readers, %v without", took, baseTook)
	}
	answer := e.messages(th.ID)
	if len(answer) != 2 || answer[1].Status != agentstream.MessageComplete || len(answer[1].Content) < len(text) {
		t.Fatalf("stored %d messages, the answer %d bytes", len(answer), len(answer[len(answer)-1].Content))
	}
	// The caps hold, but for the newest event of a run, which is always
	// kept: message.completed carries the whole answer.
	if peakLog > maxTotal+int64(len(text))+4096 {
		t.Errorf("the log held %d bytes, over its cap of %d and the largest event", peakLog, maxTotal)
	}
	// Were each stalled reader to hold what it missed, the heap would grow
	// by readers × 6 MB more; the allowance is for the answer's own copies
	// (the simulator's, the model client's, the runner's, the log's, the
	// store's; about 10 in all, measured).
	if grew := int64(peakHeap) - int64(before.HeapAlloc); grew > 16*int64(len(text)) {
		t.Errorf("the heap grew by %d bytes during the run", grew)
	}

	// Each stalled reader was cut off after the stall timeout, before the
	// run ended: reading now drains what its buffers held and ends without
	// the terminal event.
	for i, conn := range conns {
		_ = conn.SetReadDeadline(time.Now().Add(stall + 30*time.Second))
		got, err := io.ReadAll(bufio.NewReader(conn))
		if err != nil && !isReset(err) {
			t.Fatalf("stalled reader %d: %v after %d bytes", i, err, len(got))
		}
		if !bytes.HasPrefix(got, []byte("HTTP/1.1 200")) {
			t.Fatalf("stalled reader %d got %.100q", i, got)
		}
		t.Logf("stalled reader %d received %d bytes", i, len(got))
		if bytes.Contains(got, []byte("event: run.completed")) {
			t.Fatalf("stalled reader %d received the whole run (%d bytes): its writes never blocked", i, len(got))
		}
	}
	// A reader that comes back now gets what it missed: the log no longer
	// holds those events, so the end of the run is answered from the
	// store: the answer without an id of its own, then the terminal event
	// with the id it has in the log.
	_, evs := e.stream("GET", "/v1/runs/"+runID+"/events?after=1", "")
	if len(evs) != 2 || evs[0].Type != string(agentstream.EventMessageCompleted) || evs[1].Type != string(agentstream.EventRunCompleted) ||
		evs[0].ID != "" || evs[1].ID == "" {
		t.Fatalf("resuming after event 1 of the trimmed run: %+v, want the answer without an id, then the end", evs)
	}
	// The end's id is the run's: another reader gets the same, and a
	// reader at it gets 204.
	if _, again := e.stream("GET", "/v1/runs/"+runID+"/events?after=0", ""); len(again) == 0 || again[len(again)-1].ID != evs[1].ID {
		t.Fatalf("a reader from the start ends with %+v, want id %s", again, evs[1].ID)
	}
	if status := e.status("GET", "/v1/runs/"+runID+"/events", map[string]string{"Last-Event-ID": evs[1].ID}); status != http.StatusNoContent {
		t.Fatalf("a reader at the end: %d, want 204", status)
	}
}

// isReset reports whether err is the peer resetting the connection, which
// a server that closes with unread data in its buffers does.
func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}

// TestStalledStarter: the client that started a run, which the run
// writes to itself (a run executing inline), stops reading. The run waits
// for it, as a relay would, but for 5 s at most, however long the stall
// timeout: then the client is dropped and the run goes on, and nothing of
// it is lost.
func TestStalledStarter(t *testing.T) {
	t.Parallel()
	const (
		words        = 1500
		wordSize     = 4 << 10
		pace         = 2 * time.Millisecond
		stall        = time.Minute
		starterStall = 5 * time.Second
	)
	text := strings.Repeat(strings.Repeat("x", wordSize-1)+" ", words)
	e := start(t, sim.Options{Decide: func(*sim.Request) sim.Behavior { return sim.Behavior{Text: text, Pace: pace} }}, func(c *config.Config) {
		c.HTTP.StallTimeout = stall
	})
	addr := strings.TrimPrefix(e.url, "http://")

	th := e.newThread(`{}`)
	conn := smallBufferConn(t, addr)
	body := `{"input":"hello"}`
	if _, err := fmt.Fprintf(conn, "POST /v1/threads/%s/runs HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", th.ID, addr, len(body), body); err != nil {
		t.Fatal(err)
	}
	// The headers only; then the client reads nothing more.
	br := bufio.NewReaderSize(conn, 1024)
	var runID string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading the headers: %v", err)
		}
		if v, ok := strings.CutPrefix(line, "X-Run-Id: "); ok {
			runID = strings.TrimSpace(v)
		}
		if line == "\r\n" {
			break
		}
	}
	if runID == "" {
		t.Fatal("no X-Run-Id")
	}
	run := waitRunEnd(t, e, runID)
	if run.Status != agentstream.RunCompleted {
		t.Fatalf("the run of a stalled starter ended %+v", run)
	}
	took := run.FinishedAt.Sub(*run.StartedAt)
	t.Logf("%d words of %d bytes at %v each, the starter stalled: the run took %v", words, wordSize, pace, took)
	// At the pace alone the answer takes 3 s; the stalled starter adds
	// 5 s at most (and the time to fill the buffers), not the minute of
	// the stall timeout. Generous.
	if limit := 3*time.Duration(words)*pace + 2*starterStall; took > limit {
		t.Errorf("the run took %v with its starter stalled, over %v", took, limit)
	}
	answer := e.messages(th.ID)
	if len(answer) != 2 || answer[1].Status != agentstream.MessageComplete || len(answer[1].Content) < len(text) {
		t.Fatalf("stored %d messages, the answer %d bytes", len(answer), len(answer[len(answer)-1].Content))
	}
	// The starter was dropped before the end.
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	got, err := io.ReadAll(br)
	if err != nil && !isReset(err) {
		t.Fatalf("the stalled starter: %v after %d bytes", err, len(got))
	}
	if bytes.Contains(got, []byte("event: run.completed")) {
		t.Fatalf("the stalled starter received the whole run (%d bytes): its writes never blocked", len(got))
	}
	// Another reader gets the whole answer.
	_, evs := e.stream("GET", "/v1/runs/"+runID+"/events?after=0", "")
	if len(evs) == 0 || evs[len(evs)-1].Type != string(agentstream.EventRunCompleted) {
		t.Fatalf("a reader after the end got %d events, ending %+v", len(evs), evs[len(evs)-1:])
	}
}
