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
)

// Relay is the floor the bench measures agentstream against: the least a
// Go server on net/http can do to relay the simulator to the bench's
// clients. It answers the two requests a native client makes — creating a
// thread, then a run that streams — and for each run makes one streaming
// call to the model (over HTTP/2 without TLS when h2c is set, as the
// bench's agentstream child does with the simulator the bench starts),
// copying each token's text into a message.delta event
// written and flushed at once. It keeps nothing: no store, no event log,
// no run that outlives its request, no resume, no limits; it finds a
// token's text by looking for "content":"…" in the chunk, which holds
// only for the simulator's output. It is a measuring instrument, not a
// server: what agentstream spends above it is the price of what
// agentstream does and Relay does not.
func Relay(ctx context.Context, addr, modelURL string, h2c bool, log io.Writer) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
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

func (r *relay) run(w http.ResponseWriter, req *http.Request) {
	_, _ = io.Copy(io.Discard, io.LimitReader(req.Body, drainLimit))
	up, err := http.NewRequestWithContext(req.Context(), http.MethodPost, r.url, strings.NewReader(relayRequest))
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	up.Header.Set("Content-Type", "application/json")
	resp, err := r.client.Do(up)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		http.Error(w, resp.Status, http.StatusBadGateway)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	br := bufio.NewReaderSize(resp.Body, 2<<10)
	out := make([]byte, 0, 256)
	seq := 0
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return // the model's stream ended without [DONE]: the client sees no run.completed
		}
		data, ok := bytes.CutPrefix(line, []byte("data: "))
		if !ok {
			continue
		}
		if bytes.HasPrefix(data, []byte("[DONE]")) {
			seq++
			out = append(out[:0], "id: "...)
			out = strconv.AppendInt(out, int64(seq), 10)
			out = append(out, "\nevent: run.completed\ndata: {}\n\n"...)
			_, _ = w.Write(out)
			_ = rc.Flush()
			return
		}
		text, ok := contentOf(data)
		if !ok || len(text) == 0 {
			continue // not a token (the first chunk carries only the role)
		}
		seq++
		out = append(out[:0], "id: "...)
		out = strconv.AppendInt(out, int64(seq), 10)
		out = append(out, "\nevent: message.delta\ndata: {\"message_id\":\"msg_relay\",\"delta\":\""...)
		out = append(out, text...)
		out = append(out, "\"}\n\n"...)
		if _, err := w.Write(out); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}

var contentKey = []byte(`"content":"`)

// contentOf returns the still-escaped text of a chunk's "content" string:
// the simulator's chunks hold one, free of escaped quotes.
func contentOf(data []byte) ([]byte, bool) {
	i := bytes.Index(data, contentKey)
	if i < 0 {
		return nil, false
	}
	rest := data[i+len(contentKey):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 || (j > 0 && rest[j-1] == '\\') {
		return nil, false
	}
	return rest[:j], true
}
