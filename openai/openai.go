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
// BenchmarkStreamChunks.
package openai

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
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
}

var _ agentstream.Model = (*Model)(nil)

// New returns a Model for cfg, with its defaults applied.
func New(cfg Config) (*Model, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	hc := cfg.HTTPClient
	if hc == nil {
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
		svc:    oai.NewChatCompletionService(opts...),
		idle:   cfg.IdleTimeout,
		apiKey: cfg.APIKey,
	}, nil
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
	body, err := requestBody(req)
	if err != nil {
		return agentstream.ModelResult{}, err
	}
	if ctx.Err() != nil {
		return agentstream.ModelResult{}, cancelled(ctx)
	}
	if onDelta == nil {
		onDelta = func(agentstream.ModelDelta) {}
	}

	// sctx carries the call; the idle timer cancels it when the upstream is
	// silent for m.idle. The timer runs while an attempt waits for its
	// response headers (the middleware rearms it around each attempt) and
	// while the stream waits for its next chunk; it is stopped while a
	// chunk is handled, so a slow onDelta is not the upstream's fault.
	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	idle := time.AfterFunc(m.idle, func() { cancel(errIdle) })
	defer idle.Stop()
	watch := option.WithMiddleware(func(r *http.Request, next option.MiddlewareNext) (*http.Response, error) {
		actx, acancel := context.WithCancel(r.Context())
		idle.Reset(m.idle)
		res, err := next(r.WithContext(actx))
		idle.Reset(m.idle)
		if err != nil || res.Body == nil {
			acancel()
			return res, err
		}
		res.Body = &drainingBody{rc: res.Body, cancel: acancel}
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
	if raw != nil && raw.Body != nil {
		defer raw.Body.Close()
	}
	if err == nil && (raw == nil || raw.Body == nil) {
		err = errors.New("no response body")
	}
	if err != nil {
		return agentstream.ModelResult{}, m.callError(ctx, sctx, err, false)
	}

	var acc accumulator
	err = consume(newChunkDecoder(raw.Body), &acc, onDelta, idle, m.idle)
	res := acc.result()
	if err != nil {
		var de *agentstream.Error
		if errors.As(err, &de) {
			return res, de // the accumulator's verdict
		}
		return res, m.callError(ctx, sctx, err, true)
	}
	if res.FinishReason == "" {
		// The body ended cleanly but before a finish_reason: a proxy cut
		// it, or the answer was not a stream at all.
		return res, agentstream.Errorf(agentstream.CodeUpstream, "model stream ended early: no finish_reason")
	}
	return res, nil
}

// drainingBody is an attempt's response body. Its Close reads what is left
// of the body (for a stream, the end of the chunked encoding that follows
// [DONE]) before closing: net/http reuses a connection only when its body
// was read to the end, and Stream closes it as soon as it sees [DONE]. Without this, every call could dial and handshake anew. The
// drain is bounded in bytes and time; a server holding the response open
// past it loses its connection, as it would have anyway.
type drainingBody struct {
	rc     io.ReadCloser
	cancel context.CancelFunc // the attempt's context
	ended  bool               // a Read returned an error (io.EOF included)
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
	if !b.ended {
		t := time.AfterFunc(drainTimeout, b.cancel)
		_, _ = io.CopyN(io.Discard, b.rc, maxDrain)
		t.Stop()
	}
	err := b.rc.Close()
	b.cancel()
	return err
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
