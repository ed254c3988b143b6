package openai

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math/bits"
	"unicode/utf8"

	"github.com/agentstream/agentstream/internal/jsonstr"
)

// decodeChunkFast decodes data, a chat.completion.chunk, into c (reset by
// the caller) the way encoding/json would, several times faster. It
// reports false, leaving c in any state, when data is anything but
// ordinary: invalid JSON, a member of chunk's (choices, delta, index…)
// of an unexpected type or given twice, a key that is escaped, not ASCII
// or a case variant of a member's name (encoding/json matches names
// case-insensitively), a number where an integer is expected that is not
// a plain integer of up to 18 digits, nesting over maxFastDepth. The
// caller then decodes data with encoding/json, which has the last word on
// all of that. FuzzDecodeChunkFast checks that both agree.
//
// st is kept from chunk to chunk of a stream. Its head is the start of
// the last chunk up to its first member chunk keeps: the members before
// it (id, object, created, model…) are the same in every chunk of most
// servers' streams, and are about half of each. A chunk starting with
// those same bytes is parsed from where they end, in the state their
// parse left: data alone decides the result, st only how fast it comes.
func decodeChunkFast(data []byte, c *chunk, st *fastState) bool {
	d := fastDecoder{s: data, st: st}
	d.ws()
	if !d.chunk(c) {
		return false
	}
	d.ws()
	return d.p == len(d.s)
}

// fastState is what decodeChunkFast keeps between the chunks of a stream.
type fastState struct {
	scratch []byte // reused buffer for unescaping strings
	head    []byte // a copy of the last chunk's head (decodeChunkFast)
}

// maxHead bounds the head kept: OpenAI's is about 190 bytes.
const maxHead = 512

// maxFastDepth bounds the nesting of skipped values.
const maxFastDepth = 64

type fastDecoder struct {
	s  []byte
	p  int
	st *fastState
}

// ws skips whitespace. Compact JSON has none: the first test is the
// whole of most calls, and is inlined.
func (d *fastDecoder) ws() {
	if d.p < len(d.s) && d.s[d.p] > ' ' {
		return
	}
	d.wsSlow()
}

func (d *fastDecoder) wsSlow() {
	for d.p < len(d.s) {
		switch d.s[d.p] {
		case ' ', '\t', '\n', '\r':
			d.p++
		default:
			return
		}
	}
}

// peek returns the byte at p, 0 at the end.
func (d *fastDecoder) peek() byte {
	if d.p < len(d.s) {
		return d.s[d.p]
	}
	return 0
}

// open consumes the '{' or '[' that starts a value and the whitespace
// after it, and reports whether the value is empty (then its closing
// byte is consumed too).
func (d *fastDecoder) open(closing byte) (empty bool) {
	d.p++
	d.ws()
	if d.peek() == closing {
		d.p++
		return true
	}
	return false
}

// next consumes what follows a member or element: ',' (more == true) or
// the closing byte; ok is false for anything else.
func (d *fastDecoder) next(closing byte) (more, ok bool) {
	d.ws()
	switch d.peek() {
	case ',':
		d.p++
		d.ws()
		return true, true
	case closing:
		d.p++
		return false, true
	}
	return false, false
}

// key reads a member's key and the ':' after it, leaving p at the value.
// It fails on a key that is escaped or not ASCII.
func (d *fastDecoder) key() ([]byte, bool) {
	if d.peek() != '"' {
		return nil, false
	}
	s, start := d.s, d.p+1
	i := start
	for i+8 <= len(s) {
		w := binary.LittleEndian.Uint64(s[i:])
		if m := specials(w) | w&highs; m != 0 {
			i += bits.TrailingZeros64(m) >> 3
			break
		}
		i += 8
	}
	for i < len(s) && keyByte[s[i]] {
		i++
	}
	if i >= len(s) || s[i] != '"' {
		return nil, false // escaped, not ASCII, a control character, or cut
	}
	d.p = i + 1
	d.ws()
	if d.peek() != ':' {
		return nil, false
	}
	d.p++
	d.ws()
	return d.s[start:i], true
}

// keyByte marks the bytes key takes as they are: printable ASCII but the
// quote and the backslash.
var keyByte = func() (t [256]bool) {
	for c := ' '; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// strByte marks the bytes skipString passes over one at a time: anything
// but the quote, the backslash and control characters.
var strByte = func() (t [256]bool) {
	for c := ' '; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// other reports whether key, not the exact name of any member, differs
// from all of them in more than case: encoding/json would set a member
// from a key differing in case only.
func other(key []byte, names ...string) bool {
	for _, n := range names {
		if len(key) == len(n) && bytes.EqualFold(key, []byte(n)) {
			return false
		}
	}
	return true
}

// null consumes a null, if there is one.
func (d *fastDecoder) null() bool {
	if bytes.HasPrefix(d.s[d.p:], []byte("null")) {
		d.p += 4
		return true
	}
	return false
}

// skipOther skips the value of a member chunk does not keep, if its key is
// not a case variant of names.
func (d *fastDecoder) skipOther(key []byte, names ...string) bool {
	return other(key, names...) && d.skip(0)
}

func (d *fastDecoder) chunk(c *chunk) bool {
	if d.peek() != '{' {
		return false
	}
	// head is where the members skipped from the start end (before the
	// key after them), 0 while none is.
	head, kept := 0, len(d.st.head)
	hit := kept > 0 && bytes.HasPrefix(d.s, d.st.head)
	if hit {
		d.p, head = kept, kept
		d.ws() // as next did after the comma the head ends with
	} else if d.open('}') {
		return true
	}
	defer func() {
		if head > kept || (head > 0 && !hit) {
			d.st.head = append(d.st.head[:0], d.s[:head]...)
		}
	}()
	var seen uint8
	for {
		key, ok := d.key()
		if !ok {
			return false
		}
		switch string(key) {
		case "choices":
			ok = seen&1 == 0 && d.choices(c)
			seen |= 1
		case "usage":
			ok = seen&2 == 0 && d.raw(&c.Usage)
			seen |= 2
		case "error":
			ok = seen&4 == 0 && d.raw(&c.Error)
			seen |= 4
		default:
			ok = d.skipOther(key, "choices", "usage", "error")
		}
		if !ok {
			return false
		}
		if more, ok := d.next('}'); !ok || !more {
			return ok
		}
		if seen == 0 && d.p <= maxHead {
			head = d.p
		}
	}
}

// raw keeps a value as it is, as json.RawMessage does.
func (d *fastDecoder) raw(dst *json.RawMessage) bool {
	start := d.p
	if !d.skip(0) {
		return false
	}
	*dst = append((*dst)[:0], d.s[start:d.p]...)
	return true
}

func (d *fastDecoder) choices(c *chunk) bool {
	switch d.peek() {
	case 'n':
		c.Choices = c.Choices[:0]
		return d.null()
	case '[':
	default:
		return false
	}
	c.Choices = c.Choices[:0]
	if d.open(']') {
		return true
	}
	for {
		n := len(c.Choices)
		if n < cap(c.Choices) {
			c.Choices = c.Choices[:n+1] // zeroed by reset
		} else {
			c.Choices = append(c.Choices, chunkChoice{})
		}
		if !d.choice(&c.Choices[n]) {
			return false
		}
		if more, ok := d.next(']'); !ok || !more {
			return ok
		}
	}
}

func (d *fastDecoder) choice(ch *chunkChoice) bool {
	if d.peek() != '{' {
		return false
	}
	if d.open('}') {
		return true
	}
	var seen uint8
	for {
		key, ok := d.key()
		if !ok {
			return false
		}
		switch string(key) {
		case "index":
			ok = seen&1 == 0 && d.int(&ch.Index)
			seen |= 1
		case "delta":
			ok = seen&2 == 0 && d.delta(&ch.Delta)
			seen |= 2
		case "finish_reason":
			ok = seen&4 == 0 && d.str(&ch.FinishReason)
			seen |= 4
		default:
			ok = d.skipOther(key, "index", "delta", "finish_reason")
		}
		if !ok {
			return false
		}
		if more, ok := d.next('}'); !ok || !more {
			return ok
		}
	}
}

func (d *fastDecoder) delta(dl *chunkDelta) bool {
	switch d.peek() {
	case 'n':
		return d.null()
	case '{':
	default:
		return false
	}
	if d.open('}') {
		return true
	}
	var seen uint8
	for {
		key, ok := d.key()
		if !ok {
			return false
		}
		switch string(key) {
		case "content":
			ok = seen&1 == 0 && d.str(&dl.Content)
			seen |= 1
		case "refusal":
			ok = seen&2 == 0 && d.str(&dl.Refusal)
			seen |= 2
		case "tool_calls":
			ok = seen&4 == 0 && d.toolCalls(dl)
			seen |= 4
		default:
			ok = d.skipOther(key, "content", "refusal", "tool_calls")
		}
		if !ok {
			return false
		}
		if more, ok := d.next('}'); !ok || !more {
			return ok
		}
	}
}

func (d *fastDecoder) toolCalls(dl *chunkDelta) bool {
	switch d.peek() {
	case 'n':
		dl.ToolCalls = dl.ToolCalls[:0]
		return d.null()
	case '[':
	default:
		return false
	}
	dl.ToolCalls = dl.ToolCalls[:0]
	if d.open(']') {
		return true
	}
	for {
		n := len(dl.ToolCalls)
		if n < cap(dl.ToolCalls) {
			dl.ToolCalls = dl.ToolCalls[:n+1] // zeroed by reset
		} else {
			dl.ToolCalls = append(dl.ToolCalls, chunkToolCall{})
		}
		if !d.toolCall(&dl.ToolCalls[n]) {
			return false
		}
		if more, ok := d.next(']'); !ok || !more {
			return ok
		}
	}
}

func (d *fastDecoder) toolCall(tc *chunkToolCall) bool {
	if d.peek() != '{' {
		return false
	}
	if d.open('}') {
		return true
	}
	var seen uint8
	for {
		key, ok := d.key()
		if !ok {
			return false
		}
		switch string(key) {
		case "index":
			ok = seen&1 == 0 && d.int(&tc.Index)
			seen |= 1
		case "id":
			ok = seen&2 == 0 && d.str(&tc.ID)
			seen |= 2
		case "function":
			ok = seen&4 == 0 && d.function(&tc.Function)
			seen |= 4
		default:
			ok = d.skipOther(key, "index", "id", "function")
		}
		if !ok {
			return false
		}
		if more, ok := d.next('}'); !ok || !more {
			return ok
		}
	}
}

func (d *fastDecoder) function(f *chunkFunction) bool {
	switch d.peek() {
	case 'n':
		return d.null()
	case '{':
	default:
		return false
	}
	if d.open('}') {
		return true
	}
	var seen uint8
	for {
		key, ok := d.key()
		if !ok {
			return false
		}
		switch string(key) {
		case "name":
			ok = seen&1 == 0 && d.str(&f.Name)
			seen |= 1
		case "arguments":
			ok = seen&2 == 0 && d.str(&f.Arguments)
			seen |= 2
		default:
			ok = d.skipOther(key, "name", "arguments")
		}
		if !ok {
			return false
		}
		if more, ok := d.next('}'); !ok || !more {
			return ok
		}
	}
}

// int reads a plain integer (up to 18 digits, so it fits) or null (which
// leaves dst alone).
func (d *fastDecoder) int(dst *int64) bool {
	if d.peek() == 'n' {
		return d.null()
	}
	neg := d.peek() == '-'
	if neg {
		d.p++
	}
	start := d.p
	var v int64
	for d.p < len(d.s) && d.p-start <= 18 {
		c := d.s[d.p]
		if c < '0' || c > '9' {
			break
		}
		v = v*10 + int64(c-'0')
		d.p++
	}
	n := d.p - start
	if n == 0 || n > 18 || (n > 1 && d.s[start] == '0') {
		return false
	}
	switch d.peek() {
	case '.', 'e', 'E', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return false
	}
	if neg {
		v = -v
	}
	*dst = v
	return true
}

// str reads a string, as encoding/json does (invalid UTF-8 becomes
// U+FFFD, and so does a \u escape of a lone surrogate), or null (which
// leaves dst alone).
func (d *fastDecoder) str(dst *string) bool {
	switch d.peek() {
	case 'n':
		return d.null()
	case '"':
	default:
		return false
	}
	body, _, ok := jsonstr.Body(d.s[d.p+1:])
	if !ok {
		return false
	}
	d.p += len(body) + 2
	if jsonstr.Plain(body) {
		*dst = string(body)
		return true
	}
	b, ok := jsonstr.Unquote(d.st.scratch[:0], body)
	d.st.scratch = b[:0]
	if !ok {
		return false
	}
	*dst = string(b)
	return true
}

// skip skips a value, checking it is valid JSON; depth is its nesting.
func (d *fastDecoder) skip(depth int) bool {
	switch d.peek() {
	case '{':
		if depth >= maxFastDepth {
			return false
		}
		if d.open('}') {
			return true
		}
		for {
			if d.peek() != '"' || !d.skipString() {
				return false
			}
			d.ws()
			if d.peek() != ':' {
				return false
			}
			d.p++
			d.ws()
			if !d.skip(depth + 1) {
				return false
			}
			if more, ok := d.next('}'); !ok || !more {
				return ok
			}
		}
	case '[':
		if depth >= maxFastDepth {
			return false
		}
		if d.open(']') {
			return true
		}
		for {
			if !d.skip(depth + 1) {
				return false
			}
			if more, ok := d.next(']'); !ok || !more {
				return ok
			}
		}
	case '"':
		return d.skipString()
	case 't':
		return d.literal("true")
	case 'f':
		return d.literal("false")
	case 'n':
		return d.literal("null")
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return d.skipNumber()
	}
	return false
}

func (d *fastDecoder) literal(lit string) bool {
	if bytes.HasPrefix(d.s[d.p:], []byte(lit)) {
		d.p += len(lit)
		return true
	}
	return false
}

// skipString skips the string at p, checking its escapes.
func (d *fastDecoder) skipString() bool {
	s, i := d.s, d.p+1
	for i < len(s) {
		// Eight bytes at a time while none of them is special; a string's
		// ordinary bytes are most of a chunk.
		for i+8 <= len(s) {
			if m := specials(binary.LittleEndian.Uint64(s[i:])); m != 0 {
				i += bits.TrailingZeros64(m) >> 3
				break
			}
			i += 8
		}
		for i < len(s) && strByte[s[i]] {
			i++
		}
		if i >= len(s) {
			return false
		}
		c := s[i]
		switch {
		case c == '"':
			d.p = i + 1
			return true
		case c < ' ':
			return false
		case c == '\\':
			if i+1 >= len(s) {
				return false
			}
			switch s[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if _, ok := jsonstr.Hex4(s[i+2:]); !ok {
					return false
				}
				i += 6
			default:
				return false
			}
		}
	}
	return false
}

const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// specials marks with its high bit each byte of w, eight bytes of a
// string read little-endian, that is a quote, a backslash or a control
// character (below 0x20), by the bit tricks of "Determine if a word has
// a zero byte" (Bit Twiddling Hacks). A byte above a marked one may be
// marked wrongly (a borrow), never the lowest: its trailing zeros count
// the ordinary bytes before the first special one.
func specials(w uint64) uint64 {
	quote := w ^ (ones * '"')
	bslash := w ^ (ones * '\\')
	return ((quote-ones)&^quote | (bslash-ones)&^bslash | (w-ones*' ')&^w) & highs
}

// skipNumber skips the number at p, checking its grammar.
func (d *fastDecoder) skipNumber() bool {
	if d.peek() == '-' {
		d.p++
	}
	switch c := d.peek(); {
	case c == '0':
		d.p++
	case '1' <= c && c <= '9':
		d.digits()
	default:
		return false
	}
	if d.peek() == '.' {
		d.p++
		if !d.digits() {
			return false
		}
	}
	if c := d.peek(); c == 'e' || c == 'E' {
		d.p++
		if c := d.peek(); c == '+' || c == '-' {
			d.p++
		}
		if !d.digits() {
			return false
		}
	}
	return true
}

// digits skips digits and reports whether there was one.
func (d *fastDecoder) digits() bool {
	start := d.p
	for d.p < len(d.s) && '0' <= d.s[d.p] && d.s[d.p] <= '9' {
		d.p++
	}
	return d.p > start
}
