package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/agentstream/agentstream/internal/jsonstr"
)

// Relay is the floor the bench measures agentstream against: the least a
// Go server on net/http can do to relay the simulator to the bench's
// clients. It answers the requests of both endpoints the bench loads:
// native (creating a thread, then a run that streams, as message.delta
// events) and seed (POST /v1/chat, a new conversation per request, in
// the seed format byte for byte as agentstream writes it). For each run
// it makes one streaming call to the model (over HTTP/2 without TLS when
// h2c is set, all calls sharing one connection; otherwise HTTP/1.1, a
// connection per call, as with a local model server), writing each
// token as soon as it is read and flushing it. It keeps nothing: no
// store, no event log, no run that outlives its request, no resume, no
// limits (a seed stream holds its answer so far, which the format's last
// line repeats); it finds a token's text by looking for "content":"…" in
// the chunk, which holds only for the simulator's output. It is a
// measuring instrument, not a server: what agentstream spends above it
// is the price of what agentstream does and Relay does not.
func Relay(ctx context.Context, addr, modelURL string, h2c bool, log io.Writer) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	mux, transport := newRelay(modelURL, h2c)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	_, _ = fmt.Fprintf(log, "relay listening addr=http://%s model=%s\n", ln.Addr(), modelURL)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	// Streams in progress get a moment to end. A connection a client
	// opened and never used (HTTP clients dial ahead) holds Shutdown for 5
	// s; the relay keeps nothing, so whatever is left is then closed.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close() // nothing to save: the connections just end
	}
	transport.CloseIdleConnections()
	return nil
}

// newRelay returns the relay's handler and the transport of its model
// calls. With h2c the calls share one HTTP/2 connection; without, each
// has an HTTP/1.1 connection of its own (no cap on connections; 64 kept
// idle between calls).
func newRelay(modelURL string, h2c bool) (http.Handler, *http.Transport) {
	transport := &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 64}
	if h2c {
		transport.Protocols = new(http.Protocols)
		transport.Protocols.SetUnencryptedHTTP2(true)
	}
	r := &relay{
		client: &http.Client{Transport: transport},
		url:    strings.TrimSuffix(modelURL, "/") + "/chat/completions",
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/threads", r.thread)
	mux.HandleFunc("POST /v1/threads/{id}/runs", r.run)
	mux.HandleFunc("POST /v1/chat", r.chat)
	return mux, transport
}

type relay struct {
	client *http.Client
	url    string
	n      atomic.Int64
}

func (r *relay) thread(w http.ResponseWriter, req *http.Request) {
	_, _ = io.Copy(io.Discard, io.LimitReader(req.Body, drainLimit))
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_, _ = fmt.Fprintf(w, `{"id":"thr_relay_%d"}`, r.n.Add(1))
}

// relayRequest is the model call of every run.
const relayRequest = `{"model":"relay","stream":true,"messages":[{"role":"user","content":"Hello"}]}`

// call makes the run's model call; on failure it answers the client
// with an error and returns nil.
func (r *relay) call(w http.ResponseWriter, req *http.Request) *http.Response {
	_, _ = io.Copy(io.Discard, io.LimitReader(req.Body, drainLimit))
	up, err := http.NewRequestWithContext(req.Context(), http.MethodPost, r.url, strings.NewReader(relayRequest))
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return nil
	}
	up.Header.Set("Content-Type", "application/json")
	resp, err := r.client.Do(up)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return nil
	}
	if resp.StatusCode != http.StatusOK {
		_ = resp.Body.Close()
		http.Error(w, resp.Status, http.StatusBadGateway)
		return nil
	}
	return resp
}

// run streams a native run: message.delta events, then run.completed.
func (r *relay) run(w http.ResponseWriter, req *http.Request) {
	resp := r.call(w, req)
	if resp == nil {
		return
	}
	defer func() { _ = resp.Body.Close() }()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	seq := 0
	event := func(out []byte) []byte {
		seq++
		out = append(out, "id: "...)
		return strconv.AppendInt(out, int64(seq), 10)
	}
	relayTokens(w, resp.Body, func(out, text []byte) []byte {
		out = append(event(out), "\nevent: message.delta\ndata: {\"message_id\":\"msg_relay\",\"delta\":\""...)
		out = append(out, text...)
		return append(out, "\"}\n\n"...)
	}, func(out []byte) []byte {
		return append(event(out), "\nevent: run.completed\ndata: {}\n\n"...)
	})
}

// chat streams a seed request (POST /v1/chat) as agentstream's seed
// endpoint does (httpapi/wire's seed format): the headers, one
// {"delta":…,"complete":false} line per token, then the whole response
// and {"status":"done"}. Every request is a new conversation: the
// thread_id a client sends is not read.
func (r *relay) chat(w http.ResponseWriter, req *http.Request) {
	resp := r.call(w, req)
	if resp == nil {
		return
	}
	defer func() { _ = resp.Body.Close() }()
	n := strconv.FormatInt(r.n.Add(1), 10)
	threadID, runID := "thr_relay_"+n, "run_relay_"+n
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	h.Set("X-Run-Id", runID)
	h.Set("X-Thread-Id", threadID)
	// answer is the text so far, escaped as the deltas were: the
	// format's last line repeats it. scratch holds a decoded token.
	var answer, scratch []byte
	relayTokens(w, resp.Body, func(out, body []byte) []byte {
		start := len(answer)
		var ok bool
		if answer, scratch, ok = appendSeedText(answer, scratch, body); !ok {
			return out // not a JSON string (agentstream's client would have failed the call): nothing sent
		}
		out = append(out, `data: {"delta":"`...)
		out = append(out, answer[start:]...)
		return append(out, "\",\"complete\":false}\n\n"...)
	}, func(out []byte) []byte {
		out = append(out, `data: {"response":"`...)
		out = append(out, answer...)
		out = append(out, `","complete":true,"thread_id":"`...)
		out = append(out, threadID...)
		out = append(out, `","run_id":"`...)
		out = append(out, runID...)
		return append(out, "\"}\n\ndata: {\"status\":\"done\"}\n\n"...)
	})
}

// relayTokens sends the headers set on w, then relays the model's stream
// in body: each token's text (a JSON string's body, still escaped) goes
// to token, which appends what to send for it to out (nothing: nothing
// is sent), and
// the model's [DONE] to done; each is written and flushed at once. A
// stream that ends without [DONE] ends the response without done's
// bytes, so the client sees no end.
func relayTokens(w http.ResponseWriter, body io.Reader, token func(out, text []byte) []byte, done func(out []byte) []byte) {
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	br := bufio.NewReaderSize(body, 2<<10)
	out := make([]byte, 0, 256)
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return
		}
		data, ok := bytes.CutPrefix(line, []byte("data: "))
		if !ok {
			continue
		}
		if bytes.HasPrefix(data, []byte("[DONE]")) {
			_, _ = w.Write(done(out[:0]))
			_ = rc.Flush()
			return
		}
		text, ok := contentOf(data)
		if !ok || len(text) == 0 {
			continue // not a token (the first chunk carries only the role)
		}
		if out = token(out[:0], text); len(out) == 0 {
			continue
		}
		if _, err := w.Write(out); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}

// appendSeedText appends the text of body, a JSON string's body still
// escaped, to dst escaped as agentstream's seed encoder escapes it (as
// encoding/json does, <, > and & included); scratch holds the decoded
// text when there are escapes to redo. The simulator's tokens need none:
// they are copied as they are.
func appendSeedText(dst, scratch, body []byte) (out, scratch2 []byte, ok bool) {
	if jsonstr.Plain(body) && !bytes.ContainsAny(body, "<>&\u2028\u2029") {
		return append(dst, body...), scratch, true
	}
	text, ok := jsonstr.Unquote(scratch[:0], body)
	if !ok {
		return dst, text, false
	}
	n := len(dst)
	out = jsonstr.Append(dst, string(text), true) // "…", quotes included
	return append(out[:n], out[n+1:len(out)-1]...), text, true
}

var contentKey = []byte(`"content":"`)

// contentOf returns the still-escaped body of a chunk's first "content"
// string: the simulator's chunks hold one.
func contentOf(data []byte) ([]byte, bool) {
	i := bytes.Index(data, contentKey)
	if i < 0 {
		return nil, false
	}
	body, _, ok := jsonstr.Body(data[i+len(contentKey):])
	return body, ok
}
