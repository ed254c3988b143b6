package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/agentstream/agentstream/internal/sse"
)

// drainLimit bounds what is read of a body that is not used (an error
// answer, the end of a stream after its terminal event).
const drainLimit = 64 << 10

// waitUntil sleeps until at, or until ctx ends; it reports whether ctx is
// still live.
func waitUntil(ctx context.Context, at time.Time) bool {
	d := time.Until(at)
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// requestError is the error kind of a request that got no answer.
func requestError(ctx context.Context) string {
	if ctx.Err() != nil {
		return "timeout"
	}
	return "connect"
}

// serverClient makes its runs through the server, one after the other:
// client i through instance i mod Config.Instances, each run read besides
// from the next instance when there are several.
func (l *load) serverClient(ctx context.Context, i int, at time.Time) {
	var s samples
	if !waitUntil(ctx, at) {
		for range l.cfg.RunsPerClient {
			l.server.add("timeout", &s)
			if l.cross != nil {
				l.cross.add("timeout", &s)
			}
		}
		return
	}
	base := l.serverURLs[i%len(l.serverURLs)]
	threadID := ""
	for range l.cfg.RunsPerClient {
		var kind string
		if l.cfg.Endpoint == EndpointSeed {
			var b []byte
			if threadID == "" {
				b, _ = json.Marshal(map[string]string{"query": l.cfg.Input})
			} else {
				b, _ = json.Marshal(map[string]string{"query": l.cfg.Input, "thread_id": threadID})
			}
			var header http.Header
			header, kind = l.stream(ctx, l.server, http.MethodPost, base+"/v1/chat", b, newSeedParser().event, &s, nil)
			if id := header.Get("X-Thread-Id"); id != "" {
				threadID = id
			}
		} else {
			if threadID == "" {
				began := time.Now()
				if threadID, kind = l.newThread(ctx, base); kind == "" {
					s.thread = append(s.thread, time.Since(began))
				}
			}
			var crossDone chan struct{}
			var onOpen func(http.Header)
			if l.cross != nil {
				// The other instance's reader starts as soon as the run
				// has an id, while the run streams here.
				other := l.serverURLs[(i+1)%len(l.serverURLs)]
				onOpen = func(h http.Header) {
					crossDone = make(chan struct{})
					go func() {
						defer close(crossDone)
						l.crossRead(ctx, other, h.Get("X-Run-Id"))
					}()
				}
			}
			if kind == "" {
				b, _ := json.Marshal(map[string]string{"input": l.cfg.Input})
				_, kind = l.stream(ctx, l.server, http.MethodPost, base+"/v1/threads/"+threadID+"/runs", b, nativeEvent, &s, onOpen)
			}
			switch {
			case crossDone != nil:
				<-crossDone
			case l.cross != nil:
				l.cross.add("not_started:"+kind, &samples{})
			}
		}
		l.server.add(kind, &s)
	}
}

// crossRead reads run runID's events from the instance at base (not the
// run's) into the cross path.
func (l *load) crossRead(ctx context.Context, base, runID string) {
	var s samples
	if runID == "" {
		l.cross.add("no_run_id", &s)
		return
	}
	_, kind := l.stream(ctx, l.cross, http.MethodGet, base+"/v1/runs/"+runID+"/events", nil, nativeEvent, &s, nil)
	l.cross.add(kind, &s)
}

// authorize adds the API key of the server, when there is one, to req.
func (l *load) authorize(req *http.Request) {
	if l.auth != "" {
		req.Header.Set("Authorization", "Bearer "+l.auth)
	}
}

// newThread creates a thread and returns its id, or an error kind.
func (l *load) newThread(ctx context.Context, base string) (id, kind string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/threads", strings.NewReader(`{}`))
	if err != nil {
		return "", "create_thread:" + err.Error()
	}
	req.Header.Set("Content-Type", "application/json")
	l.authorize(req)
	resp, err := l.client.Do(req)
	if err != nil {
		return "", "create_thread:" + requestError(ctx)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, drainLimit))
	if err != nil {
		return "", "create_thread:" + requestError(ctx)
	}
	if resp.StatusCode != http.StatusCreated {
		return "", fmt.Sprintf("create_thread:http_%d", resp.StatusCode)
	}
	var th struct {
		ID string `json:"id"`
	}
	if json.Unmarshal(body, &th) != nil || th.ID == "" {
		return "", "create_thread:bad_answer"
	}
	return th.ID, ""
}

// directClient makes its runs against the simulator itself.
func (l *load) directClient(ctx context.Context, at time.Time) {
	var s samples
	if !waitUntil(ctx, at) {
		for range l.cfg.RunsPerClient {
			l.direct.add("timeout", &s)
		}
		return
	}
	body, _ := json.Marshal(map[string]any{
		"model": "sim", "stream": true,
		"messages": []map[string]string{{"role": "user", "content": l.cfg.Input}},
	})
	for range l.cfg.RunsPerClient {
		_, kind := l.stream(ctx, l.direct, http.MethodPost, l.simURL+"/chat/completions", body, completionEvent, &s, nil)
		l.direct.add(kind, &s)
	}
}

// stall opens a stream through the server, tells opened, never reads the
// stream, and closes it once released.
func (l *load) stall(ctx context.Context, opened chan<- struct{}) {
	resp, kind := l.openStalled(ctx)
	opened <- struct{}{}
	if kind != "" {
		l.stalled.fail(kind)
		return
	}
	l.stalled.opened.Add(1)
	defer func() { _ = resp.Body.Close() }()
	select {
	case <-l.release:
	case <-ctx.Done():
	}
}

// openStalled starts a run and returns its answer once its header is in,
// or an error kind.
func (l *load) openStalled(ctx context.Context) (*http.Response, string) {
	var target string
	var body []byte
	if l.cfg.Endpoint == EndpointSeed {
		target = l.serverURL + "/v1/chat"
		body, _ = json.Marshal(map[string]string{"query": l.cfg.Input})
	} else {
		id, kind := l.newThread(ctx, l.serverURL)
		if kind != "" {
			return nil, kind
		}
		target = l.serverURL + "/v1/threads/" + id + "/runs"
		body, _ = json.Marshal(map[string]string{"input": l.cfg.Input})
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return nil, err.Error()
	}
	req.Header.Set("Content-Type", "application/json")
	l.authorize(req)
	resp, err := l.client.Do(req)
	if err != nil {
		return nil, requestError(ctx)
	}
	if resp.StatusCode != http.StatusOK {
		_ = resp.Body.Close()
		return nil, fmt.Sprintf("http_%d", resp.StatusCode)
	}
	return resp, ""
}

// outcome is what one event means to a stream: a token's text, the end
// (fail "" for success), or a fatal error (fail set, end false).
type outcome struct {
	delta string
	end   bool
	fail  string
}

// eventFunc reads one event of a stream.
type eventFunc func(ev sse.Event) outcome

// nativeEvent reads the native stream.
func nativeEvent(ev sse.Event) outcome {
	switch ev.Type {
	case "message.delta":
		d, err := ParseNativeDelta(ev.Data)
		if err != nil {
			return outcome{fail: "bad_event"}
		}
		return outcome{delta: d}
	case "run.completed":
		return outcome{end: true}
	case "run.failed", "run.cancelled", "run.interrupted":
		var d struct {
			Error *struct {
				Code string `json:"code"`
			} `json:"error"`
		}
		kind := ev.Type
		if json.Unmarshal([]byte(ev.Data), &d) == nil && d.Error != nil && d.Error.Code != "" {
			kind += ":" + d.Error.Code
		}
		return outcome{end: true, fail: kind}
	}
	return outcome{}
}

// seedParser reads the seed stream, whose end, {"status": "done"},
// follows the answer or an error.
type seedParser struct {
	answered bool
	err      string
}

func newSeedParser() *seedParser { return &seedParser{} }

func (p *seedParser) event(ev sse.Event) outcome {
	c, err := ParseSeedChunk(ev.Data)
	if err != nil {
		return outcome{fail: "bad_event"}
	}
	switch {
	case c.Delta != nil:
		return outcome{delta: *c.Delta}
	case c.Error != nil:
		p.err = "seed_error"
		if c.Code != "" {
			p.err += ":" + c.Code
		}
	case c.Response != nil && c.Complete:
		p.answered = true
	case c.Status == "done":
		switch {
		case p.err != "":
			return outcome{end: true, fail: p.err}
		case !p.answered:
			return outcome{end: true, fail: "missing_response"}
		}
		return outcome{end: true}
	}
	return outcome{}
}

// completionEvent reads the simulator's chat completions stream.
func completionEvent(ev sse.Event) outcome {
	content, done, err := ParseCompletionChunk(ev.Data)
	switch {
	case err != nil:
		return outcome{fail: "bad_event"}
	case done:
		return outcome{end: true}
	}
	return outcome{delta: content}
}

// firstByte calls first at the first byte read through it.
type firstByte struct {
	r     io.Reader
	first func()
}

func (f *firstByte) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if n > 0 && f.first != nil {
		f.first()
		f.first = nil
	}
	return n, err
}

// stream sends body to target with method (GET: no body) and reads the
// stream of events that answers, measuring it into s and path, calling
// onOpen (when not nil) with a successful answer's header before reading
// it; it returns the answer's header and the error kind ("" when the run
// succeeded).
func (l *load) stream(ctx context.Context, path *pathStats, method, target string, body []byte, event eventFunc, s *samples, onOpen func(http.Header)) (http.Header, string) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return nil, err.Error()
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "text/event-stream")
	if path != l.direct {
		l.authorize(req)
	}
	start := time.Now()
	resp, err := l.client.Do(req)
	if err != nil {
		return nil, requestError(ctx)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, drainLimit))
		return resp.Header, fmt.Sprintf("http_%d", resp.StatusCode)
	}
	if onOpen != nil {
		onOpen(resp.Header)
	}
	open := false
	defer func() {
		if open {
			path.open.Add(-1)
		}
	}()
	fb := &firstByte{r: resp.Body, first: func() {
		s.ttfb = append(s.ttfb, time.Since(start))
		open = true
		path.opened()
	}}
	r := sse.NewReader(fb)
	var last time.Time
	tokens := 0
	for {
		ev, err := r.Next()
		if err != nil {
			switch {
			case ctx.Err() != nil:
				return resp.Header, "timeout"
			case errors.Is(err, io.EOF):
				return resp.Header, "missing_terminal"
			}
			return resp.Header, "broken_stream"
		}
		o := event(ev)
		if o.delta != "" {
			now := time.Now()
			if last.IsZero() {
				s.ttft = append(s.ttft, now.Sub(start))
			} else {
				s.gap = append(s.gap, now.Sub(last))
			}
			last = now
			s.stamps = ParseStamps(o.delta, s.stamps[:0])
			if len(s.stamps) > 0 {
				path.stamped.Store(true)
				us := now.UnixMicro()
				for _, st := range s.stamps {
					s.lat = append(s.lat, time.Duration(us-st)*time.Microsecond)
				}
			}
			n := max(len(s.stamps), 1)
			tokens += n
			path.tokens.Add(int64(n))
		}
		switch {
		case o.end && o.fail == "" && tokens == 0:
			return resp.Header, "no_tokens"
		case o.end:
			// The rest, normally nothing, is read so that the connection
			// can serve the client's next run.
			_, _ = io.Copy(io.Discard, io.LimitReader(fb, drainLimit))
			return resp.Header, o.fail
		case o.fail != "":
			return resp.Header, o.fail
		}
	}
}
