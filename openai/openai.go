// Package openai is an agentstream.Model on the chat completions API of
// OpenAI and of the servers that copy it (Ollama, vLLM, llama.cpp server).
//
// The official client, github.com/openai/openai-go, sends each request:
// authentication, base URL and headers, retries with backoff until the
// response starts, a 4xx or 5xx answer turned into an *oai.Error. The
// request body is built here (request.go): openai-go's parameter types
// marshal through reflection, about ten times the cost of encoding/json
// on the few plain types here (BenchmarkRequestBody). The streamed answer
// is decoded here too (stream.go, chunkjson.go). openai-go's own stream
// decoder unmarshals every field of every chunk into its generated types:
// 15 to 40 µs and 64 allocations (9 KB) per chunk, when the whole server
// may spend at most 30 µs of CPU per streamed token. Decoding here reads
// the Server-Sent Events through a bufio.Reader and only the fields the
// answer needs, with a small validating JSON reader that hands anything
// unusual to encoding/json: about 1 µs and 1 allocation (the text itself)
// per chunk; encoding/json alone would take several times more. See
// BenchmarkStreamChunks. The reader's buffers come from pools for each
// chunk: a stream waiting for its next chunk holds none.
//
// The goroutine that streams an answer waits in it for as long as it
// lasts, and a goroutine's stack is only halved when under a quarter of
// it is in use: Model.StreamTo (the request and the answer by pointer)
// and the decoder keep the frames under that wait small (see StreamTo).
package openai

import (
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/agentstream/agentstream"
	oai "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

// Model is an agentstream.Model calling a chat completions API. It is safe
// for concurrent use.
type Model struct {
	svc    oai.ChatCompletionService
	idle   time.Duration
	apiKey string
	// shareHeader says whether requests may share their headers' map
	// (see sharedHeader); header is the map shared.
	shareHeader bool
	header      atomic.Pointer[http.Header]
}

var _ agentstream.Model = (*Model)(nil)

// New returns a Model for cfg, with its defaults applied.
func New(cfg Config) (*Model, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	hc := cfg.HTTPClient
	own := hc == nil
	if own {
		hc = defaultHTTPClient(cfg.H2C)
	}
	opts := []option.RequestOption{
		option.WithBaseURL(cfg.BaseURL),
		option.WithHTTPClient(hc),
		option.WithMaxRetries(cfg.MaxRetries),
		option.WithMaxRetryDelay(cfg.MaxRetryDelay),
	}
	if cfg.APIKey != "" {
		opts = append(opts, option.WithAPIKey(cfg.APIKey))
	}
	for k, v := range cfg.Headers {
		opts = append(opts, option.WithHeader(k, v))
	}
	// The service, not oai.NewClient: NewClient adds options read from the
	// environment (OPENAI_API_KEY, OPENAI_BASE_URL, OPENAI_ORG_ID…), which
	// could send an OpenAI key to another server.
	return &Model{
		svc:         oai.NewChatCompletionService(opts...),
		idle:        cfg.IdleTimeout,
		apiKey:      cfg.APIKey,
		shareHeader: own,
	}, nil
}

// sharedHeader returns h, or a map of the same headers that earlier
// requests sent. The transport holds a request, headers included, for as
// long as its answer is read, and openai-go gives each attempt a copy of
// its headers (a map of a dozen, about 1 KB): the same for every first
// attempt of every call. Sharing one map is sound only if nothing
// modifies a request's headers once it reaches this middleware: openai-go
// does not (it sets them before), net/http's Transport must not, and its
// Client does only with a cookie jar; so only the Model's own client
// shares them, not one given in Config.HTTPClient (a transport that signs
// requests may well set a header).
func (m *Model) sharedHeader(h http.Header) http.Header {
	if !m.shareHeader {
		return h
	}
	p := m.header.Load()
	if p == nil {
		c := h.Clone() // the first request's own stays its own
		m.header.CompareAndSwap(nil, &c)
		return h
	}
	if sameHeader(*p, h) {
		return *p
	}
	return h
}

// sameHeader says whether a and b hold the same headers, values in the
// same order.
func sameHeader(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, va := range a {
		if vb, ok := b[k]; !ok || !slices.Equal(va, vb) {
			return false
		}
	}
	return true
}

func defaultHTTPClient(h2c bool) *http.Client {
	var rt http.RoundTripper = http.DefaultTransport
	if t, ok := rt.(*http.Transport); ok {
		t = t.Clone()
		// A server streams many calls to one host at once; the default of
		// 2 idle connections would make most calls dial (and handshake)
		// anew.
		t.MaxIdleConns = 256
		t.MaxIdleConnsPerHost = 64
		if h2c {
			t.Protocols = new(http.Protocols)
			t.Protocols.SetUnencryptedHTTP2(true)
		}
		rt = t
	}
	return &http.Client{Transport: rt}
}

// errIdle is the cancel cause of a call whose upstream went silent.
var errIdle = errors.New("model API idle timeout")

// Stream calls the model; see agentstream.Model. onDelta runs on the
// calling goroutine; it may be nil.
func (m *Model) Stream(ctx context.Context, req agentstream.ModelRequest, onDelta func(agentstream.ModelDelta)) (agentstream.ModelResult, error) {
	var res agentstream.ModelResult
	err := m.StreamTo(ctx, &req, onDelta, &res)
	return res, err
}

// StreamTo is Stream with the request and the answer by pointer: it sets
// *res to what Stream returns with the error. The agent package calls
// it when its model has it: a request and an answer by value take room
// twice in the frame of their caller, which waits for the whole answer.
//
// The goroutine that calls StreamTo waits in it for the whole answer,
// and a stack is only halved when under a quarter of it is in use: what
// the waiting frames hold is paid for every open stream. So sending the
// request (openai-go's parameters alone are 1.2 KB on the stack) is done
// in send, whose frame is gone by the time the stream is read, and the
// answer is gathered in the decoder's accumulator, on the heap
// (BenchmarkStreamMemory in ../server).
func (m *Model) StreamTo(ctx context.Context, req *agentstream.ModelRequest, onDelta func(agentstream.ModelDelta), res *agentstream.ModelResult) error {
	c, err := m.send(ctx, req)
	if err != nil {
		return failed(res, err)
	}
	defer c.close()
	return ended(consume(m.decoder(c, onDelta, res)))
}

// Streamer returns m: the model whose StreamTo this is. A type that
// embeds *Model has StreamTo promoted, and may have a Stream of its own
// that must not be bypassed; the agent package calls StreamTo only on a
// model whose Streamer is itself, and Stream on any other.
func (m *Model) Streamer() agentstream.Model { return m }

// decoder returns the decoder of c's answer, holding what consume and
// ended need rather than StreamTo's frame and their arguments (StreamTo
// waits for the whole answer). It reads the transport's body itself,
// not through drainingBody, whose frame would be under the wait for each
// chunk; ended tells the drainingBody when the body ended.
//
//go:noinline
func (m *Model) decoder(c *call, onDelta func(agentstream.ModelDelta), res *agentstream.ModelResult) *chunkDecoder {
	if onDelta == nil {
		onDelta = func(agentstream.ModelDelta) {}
	}
	var body io.Reader = c.body
	db, ok := c.body.(*drainingBody)
	if ok {
		body = db.rc
	}
	d := newChunkDecoder(body)
	d.onDelta, d.idle, d.idleFor = onDelta, c.idle, m.idle
	d.end = &streamEnd{model: m, call: c, drained: db, res: res}
	return d
}

// failed sets *res to no answer and returns err, a call's that did
// not start: out of StreamTo, whose frame would keep err meanwhile.
//
//go:noinline
func failed(res *agentstream.ModelResult, err error) error {
	*res = agentstream.ModelResult{}
	return err
}

// streamEnd is what ended needs of a stream's call.
type streamEnd struct {
	model *Model
	call  *call
	// drained is the call's drainingBody, whose body the decoder reads
	// directly (see decoder); nil when there is none.
	drained *drainingBody
	res     *agentstream.ModelResult
}

// ended sets *res to what a stream that ended with err (nil at its end)
// gathered, and returns its error. It is kept out of StreamTo's frame
// (see there).
//
//go:noinline
func ended(d *chunkDecoder, err error) error {
	e := d.end
	if e.drained != nil && d.sse.src.err != nil {
		// A read of the body failed (io.EOF included), as drainingBody's
		// own Read would have noted: it need not be drained.
		e.drained.ended = true
	}
	d.sse.done()
	res := e.res
	*res = d.acc.result()
	if err != nil {
		return e.model.streamError(e.call.parent, e.call.ctx, err)
	}
	if res.FinishReason == "" {
		// The body ended cleanly but before a finish_reason: a proxy cut
		// it, or the answer was not a stream at all.
		return agentstream.Errorf(agentstream.CodeUpstream, "model stream ended early: no finish_reason")
	}
	return nil
}

// call is a model call whose answer has started.
type call struct {
	// parent is StreamTo's context (here, not in StreamTo's arguments to
	// decoder: see there).
	parent context.Context
	// ctx carries the call; the idle timer cancels it when the upstream is
	// silent for Model.idle.
	ctx    context.Context
	cancel context.CancelCauseFunc
	idle   *time.Timer
	body   io.ReadCloser
}

func (c *call) close() {
	_ = c.body.Close()
	c.idle.Stop()
	c.cancel(nil)
}

// send sends req and returns the call once the answer's headers are in.
// It is kept out of StreamTo's frame (see there).
//
//go:noinline
func (m *Model) send(ctx context.Context, req *agentstream.ModelRequest) (_ *call, err error) {
	body, err := requestBody(*req)
	if err != nil {
		return nil, err
	}
	if ctx.Err() != nil {
		return nil, cancelled(ctx)
	}

	// The idle timer runs while an attempt waits for its response headers
	// (the middleware rearms it around each attempt) and while the stream
	// waits for its next chunk; it is stopped while a chunk is handled, so
	// a slow onDelta is not the upstream's fault.
	sctx, cancel := context.WithCancelCause(ctx)
	idle := time.AfterFunc(m.idle, func() { cancel(errIdle) })
	defer func() {
		if err != nil {
			idle.Stop()
			cancel(nil)
		}
	}()
	// The transport keeps an answer's request, body included, for as long
	// as the answer is read: the whole conversation sent, held for the
	// whole stream. Each attempt reads the body from a reader that lets
	// go of it once read, and once the call has its answer nothing holds
	// it (see sentBody).
	sent := &sentBody{}
	sent.b.Store(&body)
	defer sent.b.Store(nil)
	// An attempt has no context of its own: each cancel context is paid
	// for every open stream (its parent's map of children, its Done
	// channel), and the call's is enough (see drainingBody).
	watch := option.WithMiddleware(func(r *http.Request, next option.MiddlewareNext) (*http.Response, error) {
		if r.Body != nil && r.Body != http.NoBody {
			r.Body, r.GetBody = sent.open(), sent.reopen
		}
		r.Header = m.sharedHeader(r.Header)
		idle.Reset(m.idle)
		res, err := next(r)
		idle.Reset(m.idle)
		if err != nil || res.Body == nil {
			return res, err
		}
		res.Body = &drainingBody{rc: res.Body}
		return res, nil
	})

	// openai-go sends the body built here (its own, empty parameters are
	// replaced by WithRequestBody), retries, and turns a 4xx or 5xx into an
	// *oai.Error; raw is the response of the last attempt, its body unread
	// (NewStreaming does the same, then decodes the body with openai-go's
	// decoder, which costs several times more per chunk than the one here;
	// see the package comment).
	var raw *http.Response
	// Sent from this goroutine, which then reads the stream: with the body
	// built here, openai-go's path no longer grows its stack (stacks at
	// 1,000 streams: 41.9 MiB, against 41.6 when sent from a goroutine of
	// its own).
	_, err = m.svc.New(sctx, oai.ChatCompletionNewParams{}, watch,
		option.WithRequestBody("application/json", body), option.WithResponseBodyInto(&raw))
	if err == nil && (raw == nil || raw.Body == nil) {
		err = errors.New("no response body")
	}
	if err != nil {
		if raw != nil && raw.Body != nil {
			_ = raw.Body.Close()
		}
		return nil, m.callError(ctx, sctx, err, false)
	}
	if b, ok := raw.Body.(*drainingBody); ok {
		// The call's answer: its drain may cancel the call, which ends
		// once the body is closed anyway (call.close).
		b.abort = cancel
	}
	return &call{parent: ctx, ctx: sctx, cancel: cancel, idle: idle, body: raw.Body}, nil
}

// sentBody is a call's request body, for its attempts to read until the
// call has its answer (then b is nil).
type sentBody struct{ b atomic.Pointer[[]byte] }

// errBodyGone is a read of a request body after its call was answered,
// which net/http does not do.
var errBodyGone = errors.New("the request body was already sent")

// open returns a reader of the body.
func (s *sentBody) open() io.ReadCloser {
	var b []byte
	if p := s.b.Load(); p != nil {
		b = *p
	}
	return &bodyReader{b: b}
}

// reopen is the request's GetBody: a reader of the body again, for the
// transport to send it anew on another connection.
func (s *sentBody) reopen() (io.ReadCloser, error) {
	if s.b.Load() == nil {
		return nil, errBodyGone
	}
	return s.open(), nil
}

// bodyReader reads a request body, and lets go of it once read.
type bodyReader struct{ b []byte }

func (r *bodyReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		r.b = nil
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	if len(r.b) == 0 {
		r.b = nil
	}
	return n, nil
}

// Close does nothing: a transport may close a body while another of its
// goroutines reads it, and the body is let go of when the call returns
// anyway.
func (r *bodyReader) Close() error { return nil }

// streamError is the error of a stream that failed once started: the
// accumulator's verdict as it is, anything else through callError.
func (m *Model) streamError(ctx, sctx context.Context, err error) error {
	var de *agentstream.Error
	if errors.As(err, &de) {
		return de
	}
	return m.callError(ctx, sctx, err, true)
}

// drainingBody is an attempt's response body. Its Close reads what is left
// of the body (for a stream, the end of the chunked encoding that follows
// [DONE]) before closing: net/http reuses a connection only when its body
// was read to the end, and Stream closes it as soon as it sees [DONE]. Without this, every call could dial and handshake anew. The
// drain is bounded in bytes and time; a server holding the response open
// past it loses its connection, as it would have anyway.
//
// Only the call's answer is drained: the time bound cancels the call's
// context, which an attempt that is retried must not do. Such an
// attempt's body (an error status's, closed by openai-go before it
// retries) is closed as it is; over HTTP/1.1 its connection is then not
// reused, which costs the retry, already waiting its backoff, a dial.
type drainingBody struct {
	rc    io.ReadCloser
	abort context.CancelCauseFunc // the call's; nil but for the call's answer
	// ended: a Read returned an error (io.EOF included). StreamTo reads
	// rc itself (see Model.decoder) and sets it in ended.
	ended bool
}

const (
	maxDrain     = 64 << 10
	drainTimeout = 100 * time.Millisecond
)

func (b *drainingBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err != nil {
		b.ended = true
	}
	return n, err
}

func (b *drainingBody) Close() error {
	if !b.ended && b.abort != nil {
		t := time.AfterFunc(drainTimeout, func() { b.abort(nil) })
		_, _ = io.CopyN(io.Discard, b.rc, maxDrain)
		t.Stop()
	}
	return b.rc.Close()
}

// accumulator gathers a streamed answer.
type accumulator struct {
	content strings.Builder
	calls   []toolCallAcc
	// remap sends an upstream index to another position; see add.
	remap  map[int]int
	usage  agentstream.Usage
	finish string
}

type toolCallAcc struct {
	id, name string
	args     []byte
	// synthID is set when the upstream gave no ID and id was made up.
	synthID bool
}

// maxToolCalls bounds the tool calls of one answer (and so the index the
// upstream may use).
const maxToolCalls = 128

// add gathers chunk c; usage is its usage, nil when it has none.
func (a *accumulator) add(c *chunk, usage *chunkUsage, onDelta func(agentstream.ModelDelta)) error {
	if usage != nil {
		a.usage = agentstream.Usage{InputTokens: usage.PromptTokens, OutputTokens: usage.CompletionTokens}
	}
	for i := range c.Choices {
		ch := &c.Choices[i]
		if ch.Index != 0 {
			continue // n is 1: other choices never come
		}
		d := &ch.Delta
		if d.Content != "" {
			a.content.WriteString(d.Content)
			onDelta(agentstream.ModelDelta{Text: d.Content})
		}
		if d.Refusal != "" {
			a.content.WriteString(d.Refusal)
			onDelta(agentstream.ModelDelta{Text: d.Refusal})
		}
		for j := range d.ToolCalls {
			if err := a.addToolCall(&d.ToolCalls[j], onDelta); err != nil {
				return err
			}
		}
		if ch.FinishReason != "" {
			a.finish = ch.FinishReason
		}
	}
	return nil
}

func (a *accumulator) addToolCall(tc *chunkToolCall, onDelta func(agentstream.ModelDelta)) error {
	if tc.Index < 0 || tc.Index >= maxToolCalls {
		return agentstream.Errorf(agentstream.CodeUpstream, "model stream sent tool call index %d", tc.Index)
	}
	p := int(tc.Index)
	if q, ok := a.remap[p]; ok {
		p = q
	}
	if p >= len(a.calls) {
		a.calls = append(a.calls, make([]toolCallAcc, p+1-len(a.calls))...)
	}
	// Some servers give every call index 0 and tell them apart by ID only:
	// a new ID at an index in use starts a new call at the next position.
	if tc.ID != "" && a.calls[p].id != "" && !a.calls[p].synthID && tc.ID != a.calls[p].id {
		if len(a.calls) >= maxToolCalls {
			return agentstream.Errorf(agentstream.CodeUpstream, "model stream sent over %d tool calls", maxToolCalls)
		}
		if a.remap == nil {
			a.remap = make(map[int]int)
		}
		a.remap[int(tc.Index)] = len(a.calls)
		p = len(a.calls)
		a.calls = append(a.calls, toolCallAcc{})
	}
	call := &a.calls[p]
	if call.id == "" {
		if tc.ID != "" {
			call.id = tc.ID
		} else {
			call.id, call.synthID = agentstream.NewID("call_"), true
		}
	}
	if call.name == "" {
		call.name = tc.Function.Name
	}
	piece := tc.Function.Arguments
	call.args = append(call.args, piece...)
	onDelta(agentstream.ModelDelta{ToolCall: &agentstream.ToolCallDelta{
		Index: p, ID: call.id, Name: call.name, Arguments: piece,
	}})
	return nil
}

// result returns what has arrived so far, tool calls in index order.
func (a *accumulator) result() agentstream.ModelResult {
	res := agentstream.ModelResult{Content: a.content.String(), Usage: a.usage, FinishReason: a.finish}
	for i := range a.calls {
		c := &a.calls[i]
		if c.id == "" { // a gap in the upstream's indexes
			continue
		}
		res.ToolCalls = append(res.ToolCalls, agentstream.ToolCall{ID: c.id, Name: c.name, Arguments: string(c.args)})
	}
	return res
}
