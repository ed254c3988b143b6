package openai

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/agentstream/agentstream"
)

// This file decodes the streamed answer: Server-Sent Events (sseReader),
// each event's data a chat.completion.chunk (chunkDecoder), gathered by
// an accumulator.

// Bounds of what one event may hold. A chunk is a few hundred bytes
// (OpenAI's about 330 with its usual fields); a server sending a whole
// tool call in one chunk may send more, but not this much. The read
// buffer holds about three chunks: a longer line is gathered in
// sseReader.line.
const (
	sseBufferSize = 1 << 10
	maxEventSize  = 32 << 20
	// keepBuffer is the most an event's or a line's buffer keeps once
	// the event is read.
	keepBuffer = 64 << 10
	// waitSize is what the read that waits for the next event reads at
	// most; the buffers are taken once it has something (see sseReader).
	waitSize = 64
)

// A stream spends almost all its time waiting for its next chunk, and
// the read and data buffers (1.5 KB) were held meanwhile by every open
// stream (BenchmarkStreamMemory in ../server): a reader takes them from
// these pools when an event starts and gives them back once it is read.
var (
	readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, sseBufferSize) }}
	dataPool   = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}
)

// errEventTooLarge ends a stream whose event exceeds maxEventSize.
var errEventTooLarge = fmt.Errorf("event over %d MiB", maxEventSize>>20)

// sseReader reads the data of Server-Sent Events
// (https://html.spec.whatwg.org/multipage/server-sent-events.html):
// lines end in LF or CRLF; "data:" lines (one space after the colon is
// dropped, if there is one) add to the event's data, several of them
// joined by LF; a blank line ends the event; comments (":…") and the
// other fields (event, id, retry) are ignored, as the chat completions
// stream carries everything in data. An event without a data line is no
// event; an event cut by the end of the body is dropped, as the spec says.
// A lone CR does not end a line.
//
// Between events, with nothing buffered, the reader holds no buffer: it
// waits for the next event with a read of at most waitSize bytes into
// wait, then takes a bufio.Reader from readerPool that reads those bytes
// first, and the data buffer from dataPool; next gives both back.
type sseReader struct {
	src stickyReader
	// br is nil between events when it had nothing buffered.
	br *bufio.Reader
	// line holds a line longer than br's buffer; data the event's data
	// (taken from dataPool as datap, nil with it).
	line, data []byte
	datap      *[]byte
	started    bool // the first line was read (and its BOM dropped)
	max        int  // bound of an event's data and of a line
	wait       [waitSize]byte
}

func newSSEReader(r io.Reader) *sseReader {
	return &sseReader{src: stickyReader{r: r}, max: maxEventSize}
}

// stickyReader reads head, then r; once r fails, it fails the same way
// without reading r again (a bufio.Reader given back to its pool forgets
// an error it had not returned yet).
type stickyReader struct {
	head []byte
	r    io.Reader
	err  error
}

func (s *stickyReader) Read(p []byte) (int, error) {
	if len(s.head) > 0 {
		n := copy(p, s.head)
		s.head = s.head[n:]
		return n, nil
	}
	if s.err != nil {
		return 0, s.err
	}
	n, err := s.r.Read(p)
	s.err = err
	return n, err
}

// release gives the buffers back to their pools, br only when it holds
// nothing more to read: what data held is no longer valid.
func (r *sseReader) release() {
	if r.datap != nil {
		// A stream is read for minutes: one large event must not leave
		// its buffer that large in the pool.
		if cap(r.data) <= keepBuffer {
			*r.datap = r.data[:0]
			dataPool.Put(r.datap)
		}
		r.data, r.datap = nil, nil
	}
	if r.br != nil && r.br.Buffered() == 0 && len(r.src.head) == 0 {
		r.br.Reset(nil) // the pool must not keep the stream
		readerPool.Put(r.br)
		r.br = nil
	}
}

// done gives the buffers back for good, once the stream is over (its end,
// [DONE] or an error): what br still holds is never read.
func (r *sseReader) done() {
	r.release()
	if r.br != nil {
		r.br.Reset(nil)
		readerPool.Put(r.br)
		r.br = nil
	}
	r.src.head = nil
}

// reader returns br, taking it from its pool once the next bytes are in.
// The stream waits for the model in its read, so its frame is kept small
// (a stack is only halved when under a quarter of it is in use): the
// body is read without stickyReader's frame (nothing is left of a head
// once br is given back), and the pool's work is in take.
func (r *sseReader) reader() (*bufio.Reader, error) {
	if r.br != nil {
		return r.br, nil
	}
	for range 100 { // as bufio.Reader, a reader that never gives anything fails
		if r.src.err != nil {
			return nil, r.src.err
		}
		n, err := r.src.r.Read(r.wait[:])
		r.src.err = err
		if n > 0 {
			return r.take(n), nil
		}
		if err != nil {
			return nil, err
		}
	}
	return nil, io.ErrNoProgress
}

// take makes br read the n bytes in wait, then the body.
//
//go:noinline
func (r *sseReader) take(n int) *bufio.Reader {
	r.src.head = r.wait[:n]
	r.br = readerPool.Get().(*bufio.Reader)
	r.br.Reset(&r.src)
	return r.br
}

// next returns the data of the next event, valid until the next call.
// It returns io.EOF when the body ends, or another error from reading it.
func (r *sseReader) next() ([]byte, error) {
	r.release()
	// A stream is read for minutes: one large line must not leave its
	// buffer that large for the rest of it.
	if cap(r.line) > keepBuffer {
		r.line = nil
	}
	hasData := false
	for {
		line, err := r.readLine()
		if err != nil {
			return nil, err
		}
		if len(line) == 0 {
			if hasData {
				return r.data, nil
			}
			continue
		}
		field, value := line, []byte(nil)
		if i := bytes.IndexByte(line, ':'); i >= 0 {
			field, value = line[:i], line[i+1:]
			if len(value) > 0 && value[0] == ' ' {
				value = value[1:]
			}
		}
		if string(field) != "data" {
			continue // a comment (empty field), event, id, retry, unknown
		}
		if len(r.data)+1+len(value) > r.max {
			return nil, errEventTooLarge
		}
		if r.datap == nil {
			r.datap = dataPool.Get().(*[]byte)
			r.data = (*r.datap)[:0]
		}
		if hasData {
			r.data = append(r.data, '\n')
		}
		r.data = append(r.data, value...)
		hasData = true
	}
}

// readLine returns the next line without its LF or CRLF, valid until the
// next call. A last line without LF is dropped: it cannot end an event.
func (r *sseReader) readLine() ([]byte, error) {
	br, err := r.reader()
	if err != nil {
		return nil, err
	}
	line, err := br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		r.line = append(r.line[:0], line...)
		for err == bufio.ErrBufferFull {
			line, err = br.ReadSlice('\n')
			if len(r.line)+len(line) > r.max {
				return nil, errEventTooLarge
			}
			r.line = append(r.line, line...)
		}
		line = r.line
	}
	if err != nil {
		return nil, err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	if !r.started {
		r.started = true
		line = bytes.TrimPrefix(line, []byte("\uFEFF"))
	}
	return line, nil
}

// chunk is what the stream's chat.completion.chunk objects carry that the
// accumulator uses; the rest of each object is skipped. It is decoded by
// decodeChunkFast, or by encoding/json when that gives up.
type chunk struct {
	Choices []chunkChoice `json:"choices"`
	// Usage and Error are kept raw ("null" when the member is null, empty
	// when it is absent); see chunkDecoder.next.
	Usage json.RawMessage `json:"usage"`
	Error json.RawMessage `json:"error"`
}

type chunkChoice struct {
	Index        int64      `json:"index"`
	Delta        chunkDelta `json:"delta"`
	FinishReason string     `json:"finish_reason"`
}

type chunkDelta struct {
	Content   string          `json:"content"`
	Refusal   string          `json:"refusal"`
	ToolCalls []chunkToolCall `json:"tool_calls"`
}

type chunkToolCall struct {
	Index    int64         `json:"index"`
	ID       string        `json:"id"`
	Function chunkFunction `json:"function"`
}

type chunkFunction struct {
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
}

type chunkUsage struct {
	PromptTokens     int64 `json:"prompt_tokens"`
	CompletionTokens int64 `json:"completion_tokens"`
}

// maxReusedChoices bounds the choices kept for reuse between chunks.
const maxReusedChoices = 8

// reset empties c for the next chunk, keeping its slices' memory. Every
// element within the slices' capacity is zeroed: encoding/json decodes
// into the elements it finds there rather than into fresh ones.
func (c *chunk) reset() {
	if cap(c.Choices) > maxReusedChoices {
		c.Choices = nil
	}
	all := c.Choices[:cap(c.Choices)]
	for i := range all {
		ch := &all[i]
		calls := ch.Delta.ToolCalls[:0]
		if cap(calls) > maxToolCalls {
			calls = nil
		}
		clear(calls[:cap(calls)])
		*ch = chunkChoice{}
		ch.Delta.ToolCalls = calls
	}
	c.Choices = all[:0]
	c.Usage = c.Usage[:0]
	c.Error = c.Error[:0]
}

// isNull says whether raw, a member kept raw, is absent or null.
func isNull(raw []byte) bool {
	return len(raw) == 0 || string(raw) == "null"
}

// chunkError is a chunk that is not a JSON object.
type chunkError struct{ err error }

func (e *chunkError) Error() string { return "invalid chunk: " + e.err.Error() }
func (e *chunkError) Unwrap() error { return e.err }

var errNotObject = errors.New("not a JSON object")

// decodeChunk decodes data into c, which it resets first. A value of the
// wrong type (a string for an index, say) is skipped, as openai-go did,
// rather than failing the stream; JSON that is not an object fails.
func decodeChunk(data []byte, c *chunk, st *fastState) error {
	c.reset()
	if decodeChunkFast(data, c, st) {
		return nil
	}
	c.reset()
	err := json.Unmarshal(data, c)
	var te *json.UnmarshalTypeError
	if err != nil && !errors.As(err, &te) {
		return &chunkError{err}
	}
	if bytes.TrimLeft(data, " \t\r\n")[0] != '{' {
		// Valid JSON (encoding/json checks that first), but an array or a
		// string, say, that encoding/json skips with a type error.
		c.reset()
		return &chunkError{errNotObject}
	}
	return nil
}

// chunkDecoder reads the chunks of a stream.
type chunkDecoder struct {
	sse   *sseReader
	chunk chunk
	fast  fastState // decodeChunkFast's
	// usage is the chunk's usage when hasUsage.
	usage    chunkUsage
	hasUsage bool
	// acc gathers the chunks for Model.Stream: here rather than in its
	// frame, which stays on the stack for the whole stream.
	acc accumulator
	// What consume calls for each delta (not nil), and the idle timer it
	// runs while it waits (nil for none), for idleFor.
	onDelta func(agentstream.ModelDelta)
	idle    *time.Timer
	idleFor time.Duration
	// end is what ended needs (Model.StreamTo's; nil in tests).
	end *streamEnd
}

// newChunkDecoder is not inlined: its buffers' setup would take room in
// the frame of Model.StreamTo, which waits for the whole stream (see there).
//
//go:noinline
func newChunkDecoder(body io.Reader) *chunkDecoder {
	return &chunkDecoder{sse: newSSEReader(body)}
}

// next returns the next chunk, valid until the next call; d.hasUsage
// says whether it carries usage, then in d.usage. It returns io.EOF at [DONE] or at the
// end of the body, a *streamError for an {"error": …} chunk, a
// *chunkError for one that is not JSON, or the error reading the body.
func (d *chunkDecoder) next() (*chunk, error) {
	for {
		data, err := d.sse.next()
		if err != nil {
			return nil, err
		}
		if bytes.HasPrefix(data, []byte("[DONE]")) {
			return nil, io.EOF
		}
		if len(bytes.TrimLeft(data, " \t\r\n")) == 0 {
			continue // nothing to decode: a keep-alive
		}
		c := &d.chunk
		if err := decodeChunk(data, c, &d.fast); err != nil {
			return nil, err
		}
		if !isNull(c.Error) {
			return nil, &streamError{raw: bytes.Clone(c.Error)}
		}
		d.hasUsage = false
		if !isNull(c.Usage) && c.Usage[0] == '{' {
			d.usage = chunkUsage{}
			var te *json.UnmarshalTypeError
			if err := json.Unmarshal(c.Usage, &d.usage); err != nil && !errors.As(err, &te) {
				return nil, &chunkError{err} // cannot happen: the chunk was valid
			}
			d.hasUsage = true
		}
		return c, nil
	}
}

// consume reads d's chunks into d.acc, calling d.onDelta, until the
// stream ends, and returns d (for ended) with nil at [DONE] or the end of the body, otherwise the error
// that ended it. The idle timer, when not nil, runs while consume waits
// for a chunk and is stopped while a chunk is handled. Its one argument
// keeps its frame and its caller's small (both are under the wait).
func consume(d *chunkDecoder) (*chunkDecoder, error) {
	for {
		if d.idle != nil {
			d.idle.Reset(d.idleFor)
		}
		// It waits for the next bytes of the body (or its error, io.EOF
		// at its end, then what next would have returned) in reader,
		// straight under this frame: an event comes in one piece almost
		// always, so the stream's goroutine waits for the model here,
		// not under next's and the SSE reader's frames (a stack is only
		// halved when under a quarter of it is in use;
		// BenchmarkStreamMemory in ../server). A piece of an event that
		// comes alone is waited for in next, as before. The last event's
		// buffers go back to their pools first: a stream waiting holds
		// none (see sseReader).
		d.sse.release()
		if _, err := d.sse.reader(); err != nil {
			return d, d.stop(err)
		}
		if end, err := d.step(); end {
			return d, err
		}
	}
}

// step decodes the next chunk and adds it to d.acc, the idle timer
// stopped in between; end is true when the stream is over, with err nil
// at its end. Out of consume, whose frame is under the wait: what step
// holds would take room there.
//
//go:noinline
func (d *chunkDecoder) step() (end bool, err error) {
	c, err := d.next()
	if err != nil {
		return true, d.stop(err)
	}
	d.stop(nil)
	var usage *chunkUsage
	if d.hasUsage {
		usage = &d.usage
	}
	err = d.acc.add(c, usage, d.onDelta)
	return err != nil, err
}

// stop stops the idle timer, and returns what consume returns for err:
// nil for io.EOF (the stream's end), err otherwise.
//
//go:noinline
func (d *chunkDecoder) stop(err error) error {
	if d.idle != nil {
		d.idle.Stop()
	}
	if err == io.EOF {
		return nil
	}
	return err
}
