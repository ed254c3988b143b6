// Package sim is a simulated OpenAI-compatible chat model served over real
// HTTP: POST /v1/chat/completions (streamed or not) and GET /v1/models.
//
// It is a development and load-test tool, never a model: its replies are
// generated from fixed rules (every text starts with "[simulated]"), it
// calls the tools a user message names, all in one reply, with arguments
// made up from the tools' JSON Schemas (wrong ones when asked, then a
// corrected attempt: see Default), and it answers tool results by quoting
// them. It is
// the upstream of the project's tests and benchmarks and what the server
// talks to when no API key is set. Options, a Decide hook and X-Sim-*
// request headers script its pace, its replies and its faults (error
// statuses, cut and stalled streams). With Options.Stamp its generated
// replies carry the time each token was sent (see AppendStampToken), so a
// load generator measures the exact delay of every token.
package sim

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Headers that override a request's settings, for direct callers such as
// a load generator. Durations are Go durations ("15ms"); a bad value is
// answered 400.
const (
	HeaderTokens     = "X-Sim-Tokens"      // reply length in tokens, >= 1
	HeaderPace       = "X-Sim-Pace"        // time between tokens, >= 0
	HeaderTTFT       = "X-Sim-TTFT"        // time to first token, >= 0
	HeaderFault      = "X-Sim-Fault"       // a Fault, "none" to override Options.Fault
	HeaderFaultAfter = "X-Sim-Fault-After" // tokens before a cut or stall, >= 0
	// HeaderArguments chooses the arguments of the default policy's tool
	// calls: "valid" (SampleArguments) or "wrong" (WrongArguments, then a
	// corrected attempt after the tool's error); see Default.
	HeaderArguments = "X-Sim-Arguments"
)

// maxBody bounds a chat request's body.
const maxBody = 32 << 20

// Server is the simulated model, an http.Handler. It is safe for
// concurrent use.
type Server struct {
	opts   atomic.Pointer[Options]
	prefix string        // random per server, in ids
	seq    atomic.Uint64 // ids

	mu       sync.Mutex
	reqs     []Request
	faulted  int // requests answered with Options.Fault, for FailFirst
	active   int
	canceled int
	changed  chan struct{} // closed on a change of active or canceled; made by waiters
}

// New returns a server with the given options. It panics when the options
// are invalid (see Options.Validate); Start returns the error instead.
func New(opts Options) *Server {
	s := &Server{prefix: strings.ToLower(rand.Text()[:8])}
	s.SetOptions(opts)
	return s
}

// SetOptions replaces the server's options; requests already being served
// keep the old ones. It panics when the options are invalid.
func (s *Server) SetOptions(opts Options) {
	if err := opts.Validate(); err != nil {
		panic(err)
	}
	opts = opts.WithDefaults()
	s.opts.Store(&opts)
}

// Options returns the server's options, defaults applied.
func (s *Server) Options() Options { return *s.opts.Load() }

// Requests returns the chat requests received, oldest first (the latest
// Options.Record of them). A request is recorded once it is parsed and
// valid, before it is answered, whatever the answer (faults included).
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.reqs...)
}

// Reset forgets the recorded requests, the canceled count and the count of
// faults answered for Options.FailFirst.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reqs = nil
	s.faulted = 0
	s.canceled = 0
	s.notifyLocked()
}

// Active returns how many chat requests are being served.
func (s *Server) Active() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.active
}

// Canceled returns how many chat requests ended because the client went
// away (or the server was closed) before the reply was finished, stalled
// streams included.
func (s *Server) Canceled() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.canceled
}

// WaitActive waits until exactly n chat requests are being served, or ctx
// ends.
func (s *Server) WaitActive(ctx context.Context, n int) error {
	return s.wait(ctx, func() bool { return s.active == n })
}

// WaitCanceled waits until Canceled reaches at least n, or ctx ends.
func (s *Server) WaitCanceled(ctx context.Context, n int) error {
	return s.wait(ctx, func() bool { return s.canceled >= n })
}

func (s *Server) wait(ctx context.Context, cond func() bool) error {
	for {
		s.mu.Lock()
		if cond() {
			s.mu.Unlock()
			return nil
		}
		if s.changed == nil {
			s.changed = make(chan struct{})
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (s *Server) notifyLocked() {
	if s.changed != nil {
		close(s.changed)
		s.changed = nil
	}
}

func (s *Server) begin() {
	s.mu.Lock()
	s.active++
	s.notifyLocked()
	s.mu.Unlock()
}

func (s *Server) end(canceled bool) {
	s.mu.Lock()
	s.active--
	if canceled {
		s.canceled++
	}
	s.notifyLocked()
	s.mu.Unlock()
}

func (s *Server) record(r *Request, keep int) {
	if keep <= 0 {
		return
	}
	s.mu.Lock()
	s.reqs = append(s.reqs, *r)
	if len(s.reqs) > keep {
		s.reqs = s.reqs[len(s.reqs)-keep:]
	}
	s.mu.Unlock()
}

// optionFault returns Options.Fault when it applies to one more request
// under FailFirst, counting it.
func (s *Server) optionFault(o *Options) Fault {
	if !o.Fault.active() {
		return FaultNone
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if o.FailFirst > 0 && s.faulted >= o.FailFirst {
		return FaultNone
	}
	s.faulted++
	return o.Fault
}

func (s *Server) newID(prefix string) string {
	return prefix + s.prefix + "_" + strconv.FormatUint(s.seq.Add(1), 10)
}

// ServeHTTP serves POST /v1/chat/completions and GET /v1/models (the /v1
// prefix is optional); anything else is a 404 JSON error.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	if strings.HasPrefix(path, "/v1/") {
		path = path[len("/v1"):]
	}
	switch path {
	case "/chat/completions":
		if r.Method != http.MethodPost {
			methodNotAllowed(w, r, http.MethodPost)
			return
		}
		s.chat(w, r)
	case "/models":
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			methodNotAllowed(w, r, http.MethodGet)
			return
		}
		s.models(w)
	default:
		writeError(w, &apiError{Status: http.StatusNotFound, Type: "invalid_request_error", Code: "unknown_url",
			Message: fmt.Sprintf("unknown URL: %s %s", r.Method, r.URL.Path)})
	}
}

func methodNotAllowed(w http.ResponseWriter, r *http.Request, allow string) {
	w.Header().Set("Allow", allow)
	writeError(w, &apiError{Status: http.StatusMethodNotAllowed, Type: "invalid_request_error", Code: "method_not_allowed",
		Message: fmt.Sprintf("method %s not allowed on %s; use %s", r.Method, r.URL.Path, allow)})
}

type model struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

func (s *Server) models(w http.ResponseWriter) {
	o := s.opts.Load()
	list := struct {
		Object string  `json:"object"`
		Data   []model `json:"data"`
	}{Object: "list", Data: []model{{ID: "sim", Object: "model", OwnedBy: "agentstream-sim"}}}
	for _, m := range o.Models {
		if m != "sim" {
			list.Data = append(list.Data, model{ID: m, Object: "model", OwnedBy: "agentstream-sim"})
		}
	}
	writeJSON(w, http.StatusOK, list)
}

// overrides are the X-Sim-* headers of a request; zero fields are unset.
type overrides struct {
	tokens        int
	pace, ttft    time.Duration
	paceSet       bool
	ttftSet       bool
	fault         Fault
	faultAfter    int
	faultAfterSet bool
}

func parseHeaders(h http.Header) (overrides, *apiError) {
	var o overrides
	bad := func(name, v, why string) *apiError {
		return invalid(name, "invalid_header", "invalid %s header %q: %s", name, v, why)
	}
	if v := h.Get(HeaderTokens); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return o, bad(HeaderTokens, v, "want an integer >= 1")
		}
		o.tokens = n
	}
	for _, d := range []struct {
		name string
		val  *time.Duration
		set  *bool
	}{{HeaderPace, &o.pace, &o.paceSet}, {HeaderTTFT, &o.ttft, &o.ttftSet}} {
		if v := h.Get(d.name); v != "" {
			t, err := time.ParseDuration(v)
			if err != nil || t < 0 {
				return o, bad(d.name, v, "want a duration >= 0 such as 20ms")
			}
			*d.val, *d.set = t, true
		}
	}
	if v := h.Get(HeaderFault); v != "" {
		f := Fault(v)
		if !f.valid() {
			return o, bad(HeaderFault, v, "want none, cut, stall or an HTTP status 400-599")
		}
		o.fault = f
	}
	if v := h.Get(HeaderArguments); v != "" && v != "valid" && v != "wrong" {
		return o, bad(HeaderArguments, v, "want valid or wrong")
	}
	if v := h.Get(HeaderFaultAfter); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return o, bad(HeaderFaultAfter, v, "want an integer >= 0")
		}
		o.faultAfter, o.faultAfterSet = n, true
	}
	return o, nil
}

// plan is how one request is answered.
type plan struct {
	text       string
	calls      []ToolCallSpec // ids filled in
	pace, ttft time.Duration  // >= 0
	argChunk   int
	fault      Fault // FaultNone or an active fault
	faultAfter int
	// stamped is the token count of a stamped reply (Options.Stamp),
	// whose tokens are made as they are sent; 0 when text is sent as is.
	stamped int
}

// midStream reports whether the plan's fault happens inside the stream.
func (p *plan) midStream() bool { return p.fault == FaultCut || p.fault == FaultStall }

func nonNegative(d time.Duration) time.Duration { return max(d, 0) }

// plan resolves the request's answer: Options, then headers, then Decide.
func (s *Server) plan(o *Options, req *Request, h overrides) (*plan, *apiError) {
	tokens := o.Tokens
	p := &plan{pace: nonNegative(o.Pace), ttft: nonNegative(o.TTFT), argChunk: o.ArgChunk, faultAfter: o.FaultAfter}
	if h.tokens > 0 {
		tokens = h.tokens
	}
	if h.paceSet {
		p.pace = h.pace
	}
	if h.ttftSet {
		p.ttft = h.ttft
	}
	if h.faultAfterSet {
		p.faultAfter = h.faultAfter
	}
	fault := h.fault

	var b Behavior
	if o.Decide != nil {
		b = o.Decide(req)
	}
	if b.Tokens > 0 {
		tokens = b.Tokens
	}
	if b.Pace != 0 {
		p.pace = nonNegative(b.Pace)
	}
	if b.TTFT != 0 {
		p.ttft = nonNegative(b.TTFT)
	}
	if b.ArgChunk > 0 {
		p.argChunk = b.ArgChunk
	}
	if b.FaultAfter != 0 {
		p.faultAfter = max(b.FaultAfter, 0)
	}
	if b.Fault != "" {
		if !b.Fault.valid() {
			return nil, &apiError{Status: http.StatusInternalServerError, Type: "server_error", Code: "sim_bad_behavior",
				Message: fmt.Sprintf("sim: Decide returned an unknown fault %q", b.Fault)}
		}
		fault = b.Fault
	}
	if fault == "" {
		fault = s.optionFault(o)
	}
	p.fault = fault

	if b.Text == "" && len(b.ToolCalls) == 0 {
		d := Default(req)
		b.Text, b.ToolCalls = d.Text, d.ToolCalls
		if b.Text == "" && len(b.ToolCalls) == 0 {
			b.Text = DefaultText(tokens)
			if o.Stamp {
				p.stamped = max(tokens, 1)
			}
		}
	}
	p.text = b.Text
	if len(b.ToolCalls) > 0 {
		p.calls = make([]ToolCallSpec, len(b.ToolCalls))
		for i, c := range b.ToolCalls {
			if c.ID == "" {
				c.ID = s.newID("call_")
			}
			p.calls[i] = c
		}
	}
	return p, nil
}

func (s *Server) chat(w http.ResponseWriter, r *http.Request) {
	s.begin()
	canceled := false
	defer func() { s.end(canceled) }()

	o := s.opts.Load()
	h, e := parseHeaders(r.Header)
	if e != nil {
		writeError(w, e)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, &apiError{Status: http.StatusRequestEntityTooLarge, Type: "invalid_request_error",
				Code: "request_too_large", Message: fmt.Sprintf("the request body is over %d bytes", maxBody)})
			return
		}
		canceled = true
		return
	}
	req, e := parseRequest(body, !o.Lenient)
	if e != nil {
		writeError(w, e)
		return
	}
	req.Header = r.Header.Clone()
	s.record(req, o.Record)

	p, e := s.plan(o, req, h)
	if e != nil {
		writeError(w, e)
		return
	}
	if status := p.fault.Status(); status != 0 {
		writeFault(w, status, o.RetryAfter)
		return
	}
	if req.Stream {
		canceled = s.stream(w, r, req, p)
	} else {
		canceled = s.complete(w, r, req, p)
	}
}

// writeFault answers a status fault with an OpenAI-style error.
func writeFault(w http.ResponseWriter, status int, retryAfter time.Duration) {
	e := &apiError{Status: status, Type: "invalid_request_error", Code: "simulated_fault",
		Message: fmt.Sprintf("[simulated] fault: the simulator was told to answer %d %s", status, http.StatusText(status))}
	switch {
	case status == http.StatusTooManyRequests:
		retryAfter = nonNegative(retryAfter)
		e.Type, e.Code = "requests", "rate_limit_exceeded"
		e.Message = fmt.Sprintf("[simulated] Rate limit reached for requests. Please try again in %v.", retryAfter)
		w.Header().Set("Retry-After-Ms", strconv.FormatInt(retryAfter.Milliseconds(), 10))
		w.Header().Set("Retry-After", strconv.FormatInt(int64(retryAfter/time.Second), 10))
	case status == http.StatusUnauthorized:
		e.Code = "invalid_api_key"
	case status >= 500:
		e.Type, e.Code = "server_error", "server_error"
	}
	writeError(w, e)
}

// errFault stops a stream where its fault is due.
var errFault = errors.New("sim: fault due")

// streamer sends the chunks of one streamed reply and counts its tokens.
type streamer struct {
	ctx context.Context
	w   http.ResponseWriter
	rc  *http.ResponseController
	p   *plan
	sl  sleeper
	n   int // tokens sent
}

// send writes one chunk and flushes it.
func (st *streamer) send(b []byte) error {
	if _, err := st.w.Write(b); err != nil {
		return err
	}
	return st.rc.Flush()
}

// token sends one token's chunk: first the fault when it is due, then the
// pace after the previous token.
func (st *streamer) token(b []byte) error {
	if err := st.ready(); err != nil {
		return err
	}
	return st.sent(b)
}

// ready returns the fault when it is due, else waits the pace after the
// previous token.
func (st *streamer) ready() error {
	if st.p.midStream() && st.n >= st.p.faultAfter {
		return errFault
	}
	if st.n > 0 && !st.sl.sleep(st.ctx, st.p.pace) {
		return st.ctx.Err()
	}
	return nil
}

// sent sends a token's chunk once ready.
func (st *streamer) sent(b []byte) error {
	if err := st.send(b); err != nil {
		return err
	}
	st.n++
	return nil
}

// stream answers with a streamed reply and reports whether the client went
// away first.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, req *Request, p *plan) (canceled bool) {
	st := &streamer{ctx: r.Context(), w: w, rc: http.NewResponseController(w), p: p}
	defer st.sl.stop()
	if !st.sl.sleep(st.ctx, p.ttft) {
		return true
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	c := newChunker(s.newID("chatcmpl-sim-"), time.Now().Unix(), req.Model)

	err := st.send(c.role())
	if p.stamped > 0 {
		// Each token is made when it is due, stamped with that time.
		var tok []byte
		for i := 0; err == nil && i < p.stamped; i++ {
			if err = st.ready(); err == nil {
				tok = AppendStampToken(tok[:0], i, p.stamped, time.Now())
				err = st.sent(c.content(string(tok)))
			}
		}
	}
	for text := p.text; p.stamped == 0 && err == nil && text != ""; {
		n := nextToken(text)
		err = st.token(c.content(text[:n]))
		text = text[n:]
	}
	for i, call := range p.calls {
		if err != nil {
			break
		}
		err = st.send(c.toolStart(i, call.ID, call.Name))
		for args := call.Arguments; err == nil && args != ""; {
			n := nextPiece(args, p.argChunk)
			err = st.token(c.toolArgs(i, args[:n]))
			args = args[n:]
		}
	}
	if err == nil && p.midStream() {
		err = errFault
	}
	if err == errFault {
		return fault(st.ctx, st.rc, p.fault)
	}
	if err != nil {
		return true
	}

	reason := "stop"
	if len(p.calls) > 0 {
		reason = "tool_calls"
	}
	if st.send(c.finish(reason)) != nil {
		return true
	}
	if req.IncludeUsage {
		prompt := PromptTokens(req)
		if st.send(c.usage(usage{PromptTokens: prompt, CompletionTokens: st.n, TotalTokens: prompt + st.n})) != nil {
			return true
		}
	}
	_, err = io.WriteString(w, doneChunk)
	if err == nil {
		err = st.rc.Flush()
	}
	return err != nil
}

// fault carries out a cut or a stall and reports whether the client went
// away (a stall always ends that way).
func fault(ctx context.Context, rc *http.ResponseController, f Fault) (canceled bool) {
	if f == FaultStall {
		<-ctx.Done()
		return true
	}
	abort(rc)
	return false
}

// abort closes the connection without ending the response properly: the
// client sees its read fail, not a clean end of body.
func abort(rc *http.ResponseController) {
	conn, _, err := rc.Hijack()
	if err != nil {
		// HTTP/2, or a writer that cannot hijack: net/http resets the
		// stream or closes the connection.
		panic(http.ErrAbortHandler)
	}
	_ = conn.Close()
}

// nextPiece returns the length of the next piece of at least k bytes of
// args, rounded up to a whole UTF-8 character.
func nextPiece(args string, k int) int {
	n := min(k, len(args))
	for n < len(args) && !utf8.RuneStart(args[n]) {
		n++
	}
	return n
}

// complete answers with a non-streamed reply, after the time the stream
// would have taken, and reports whether the client went away first.
func (s *Server) complete(w http.ResponseWriter, r *http.Request, req *Request, p *plan) (canceled bool) {
	ctx := r.Context()
	var sl sleeper
	defer sl.stop()
	if p.fault == FaultStall {
		<-ctx.Done()
		return true
	}
	tokens := len(Split(p.text))
	for _, c := range p.calls {
		for args := c.Arguments; args != ""; {
			n := nextPiece(args, p.argChunk)
			tokens++
			args = args[n:]
		}
	}
	if !sl.sleep(ctx, p.ttft+p.pace*time.Duration(max(tokens-1, 0))) {
		return true
	}
	if p.stamped > 0 {
		// Every token is sent now, in this one body.
		p.text = StampText(p.stamped, time.Now())
	}
	prompt := PromptTokens(req)
	msg := responseMessage{Role: "assistant"}
	if p.text != "" || len(p.calls) == 0 {
		msg.Content = &p.text
	}
	reason := "stop"
	for _, c := range p.calls {
		reason = "tool_calls"
		msg.ToolCalls = append(msg.ToolCalls, responseToolCall{ID: c.ID, Type: "function",
			Function: wireFunction{Name: c.Name, Arguments: c.Arguments}})
	}
	resp := completion{
		ID: s.newID("chatcmpl-sim-"), Object: "chat.completion", Created: time.Now().Unix(), Model: req.Model,
		Choices: []choice{{Message: msg, FinishReason: reason}},
		Usage:   usage{PromptTokens: prompt, CompletionTokens: tokens, TotalTokens: prompt + tokens},
	}
	data, err := json.Marshal(resp)
	if err != nil {
		panic("sim: encoding response: " + err.Error())
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(http.StatusOK)
	if p.fault != FaultCut {
		_, err = w.Write(data)
		return err != nil
	}
	// Half the promised body, then the connection goes.
	_, _ = w.Write(data[:len(data)/2])
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	abort(rc)
	return false
}

// sleeper sleeps with one reused timer, waking early when ctx ends.
type sleeper struct{ t *time.Timer }

// sleep waits d and reports whether ctx is still live.
func (s *sleeper) sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	if s.t == nil {
		s.t = time.NewTimer(d)
	} else {
		s.t.Reset(d)
	}
	select {
	case <-ctx.Done():
		s.t.Stop()
		return false
	case <-s.t.C:
		return true
	}
}

func (s *sleeper) stop() {
	if s.t != nil {
		s.t.Stop()
	}
}
