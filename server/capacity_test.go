//go:build unix

package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/agentstream/agentstream/config"
	"github.com/agentstream/agentstream/internal/sse"
	"github.com/agentstream/agentstream/sim"
)

// TestDefaultsServeAThousand: with runs.* and limits.* as they ship, a
// thousand conversations started together are all served at once: every
// one has its first token before any has ended. The simulated model
// paces its 3 tokens 5 s apart, so a stream served at once ends about 10 s
// after it started; one left in the queue would get its first token only
// after another ended.
func TestDefaultsServeAThousand(t *testing.T) {
	if testing.Short() {
		t.Skip("a thousand streams: not with -short")
	}
	t.Parallel()
	const streams, tokens, pace = 1000, 3, 5 * time.Second
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	// Go raised the soft limit to the hard one at start: the limit the
	// server's default is made from.
	if rl.Cur != rl.Max {
		t.Errorf("open-file limit: soft %d, hard %d; Go raises the soft one at start", rl.Cur, rl.Max)
	}
	// This process holds both ends of the clients' and the model's
	// connections: 4 descriptors per stream.
	if need := uint64(4*streams + config.ReservedFiles); rl.Cur < need {
		t.Skipf("the open-file limit (%d) is below the %d this test needs", rl.Cur, need)
	}
	e := start(t, sim.Options{Tokens: tokens, Pace: pace}, nil)
	if n := e.srv.Config().Runs.MaxConcurrent; n != config.ConcurrentForFileLimit(rl.Cur, 1024) || n < streams {
		t.Fatalf("runs.max_concurrent by default: %d, with %d files", n, rl.Cur)
	}

	client := &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: streams}}
	t.Cleanup(client.CloseIdleConnections)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	type outcome struct {
		first, end time.Time
		deltas     int
		err        error
	}
	out := make([]outcome, streams)
	var wg sync.WaitGroup
	for i := range streams {
		wg.Go(func() {
			out[i].first, out[i].end, out[i].deltas, out[i].err = chatStream(ctx, client, e.url, fmt.Sprintf(`{"query":"Hello %d"}`, i))
		})
	}
	wg.Wait()
	var lastFirst, firstEnd time.Time
	failed := 0
	for i, o := range out {
		if o.err != nil || o.deltas != tokens {
			if failed++; failed <= 5 {
				t.Errorf("stream %d: %d tokens, %v", i, o.deltas, o.err)
			}
			continue
		}
		if o.first.After(lastFirst) {
			lastFirst = o.first
		}
		if firstEnd.IsZero() || o.end.Before(firstEnd) {
			firstEnd = o.end
		}
	}
	if failed > 0 {
		t.Fatalf("%d of %d streams failed", failed, streams)
	}
	if !lastFirst.Before(firstEnd) {
		t.Fatalf("a stream had its first token %s after another had ended: not all served at once", lastFirst.Sub(firstEnd))
	}
	t.Logf("%d streams: the last first token came %s before the first end", streams, firstEnd.Sub(lastFirst).Round(time.Millisecond))
}

// chatStream starts a conversation on POST /v1/chat and reads it to its
// end: when its first token came, when it ended, and how many tokens.
func chatStream(ctx context.Context, client *http.Client, url, body string) (first, end time.Time, deltas int, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/chat", strings.NewReader(body))
	if err != nil {
		return first, end, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return first, end, 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		return first, end, 0, fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	r := sse.NewReader(resp.Body)
	for {
		ev, err := r.Next()
		if errors.Is(err, io.EOF) {
			return first, end, deltas, errors.New("the stream ended without its status")
		}
		if err != nil {
			return first, end, deltas, err
		}
		var chunk struct {
			Delta  string `json:"delta"`
			Status string `json:"status"`
		}
		if err := json.Unmarshal([]byte(ev.Data), &chunk); err != nil {
			return first, end, deltas, fmt.Errorf("chunk %q: %v", ev.Data, err)
		}
		switch {
		case chunk.Delta != "":
			if deltas++; deltas == 1 {
				first = time.Now()
			}
		case chunk.Status == "done":
			return first, time.Now(), deltas, nil
		}
	}
}

// TestCapacityLogged: the server says at start how many runs it runs at
// once and the open-file limit that decided it, and warns when the runs
// and queue set may need more descriptors than the limit.
func TestCapacityLogged(t *testing.T) {
	t.Parallel()
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	find := func(lines []string, prefix string) string {
		for _, l := range lines {
			if strings.HasPrefix(l, prefix) {
				return l
			}
		}
		return ""
	}
	logs := &logRecorder{}
	e := startLogged(t, sim.Options{}, nil, logs)
	lines, _ := logs.lines()
	want := fmt.Sprintf("INFO capacity runs.max_concurrent=%d runs.max_queued=1024 open_file_limit=%d event_log.max_total_bytes=268435456 event_log.max_finished_bytes=33554432 event_log.retention=10m0s",
		e.srv.Config().Runs.MaxConcurrent, rl.Cur)
	if got := find(lines, "INFO capacity"); got != want {
		t.Errorf("capacity line:\n%s\nwant\n%s", got, want)
	}
	if got := find(lines, "WARN the open-file limit"); got != "" && rl.Cur >= uint64(2*config.MaxDefaultConcurrent+1024+config.ReservedFiles) {
		t.Errorf("warned with the defaults: %s", got)
	}

	// More runs than the limit has descriptors for.
	logs = &logRecorder{}
	over := int(min(rl.Cur, 1<<30))
	startLogged(t, sim.Options{}, func(c *config.Config) { c.Runs.MaxConcurrent = over }, logs)
	lines, _ = logs.lines()
	if got := find(lines, "WARN the open-file limit is below what runs.max_concurrent and runs.max_queued may need"); !strings.Contains(got, fmt.Sprintf("runs.max_concurrent=%d", over)) {
		t.Errorf("no warning with runs.max_concurrent %d and %d files: %q", over, rl.Cur, lines)
	}
}
