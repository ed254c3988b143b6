package wire

import (
	"bytes"
	"encoding/json"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/agentstream/agentstream"
)

// DecodeDelta decodes the data of a message.delta event, made once per
// streamed token, without reflection: it appends the delta's text to dst
// and returns it with the message id. The data agentstream makes
// ({"message_id":"…","delta":"…"}, NewDeltaEvent) is parsed by hand; any
// other valid JSON falls back to encoding/json, with the same result.
// msgID is only valid until dst's next use when it was unescaped; ok is
// false when data is not a delta's JSON.
func DecodeDelta(dst, data []byte) (text, msgID []byte, ok bool) {
	const head, mid = `{"message_id":"`, `,"delta":"`
	if rest, found := bytes.CutPrefix(data, []byte(head)); found {
		if id, rest, ok := stringBody(rest); ok && plain(id) {
			if rest, found := bytes.CutPrefix(rest, []byte(mid)); found {
				if body, rest, ok := stringBody(rest); ok && len(rest) == 1 && rest[0] == '}' {
					if out, ok := unquote(dst, body); ok {
						return out, id, true
					}
				}
			}
		}
	}
	var d agentstream.MessageDeltaData
	if json.Unmarshal(data, &d) != nil {
		return dst, nil, false
	}
	return append(dst, d.Delta...), []byte(d.MessageID), true
}

// plain reports whether a JSON string's body is its text as it is: no
// escapes, no control characters, valid UTF-8 (an id always is).
func plain(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c == '\\' {
			return false
		}
	}
	return utf8.Valid(b)
}

// stringBody splits b, which starts inside a JSON string, at the string's
// closing quote: the body (still escaped), and what follows the quote.
func stringBody(b []byte) (body, rest []byte, ok bool) {
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return b[:i], b[i+1:], true
		}
	}
	return nil, nil, false
}

// unquote appends the text of a JSON string's body to dst as encoding/json
// decodes it; ok is false for anything it does not take as it is (raw
// control characters, invalid UTF-8, bad escapes), which the caller hands
// to encoding/json instead.
func unquote(dst, body []byte) ([]byte, bool) {
	for i := 0; i < len(body); {
		c := body[i]
		switch {
		case c == '\\':
			if i+1 >= len(body) {
				return dst, false
			}
			i++
			switch body[i] {
			case '"', '\\', '/':
				dst = append(dst, body[i])
			case 'b':
				dst = append(dst, '\b')
			case 'f':
				dst = append(dst, '\f')
			case 'n':
				dst = append(dst, '\n')
			case 'r':
				dst = append(dst, '\r')
			case 't':
				dst = append(dst, '\t')
			case 'u':
				r, ok := hex4(body[i+1:])
				if !ok {
					return dst, false
				}
				i += 4
				if utf16.IsSurrogate(r) {
					// A high half followed by a low half is one rune;
					// a half alone is U+FFFD, as encoding/json has it.
					if len(body) > i+2 && body[i+1] == '\\' && body[i+2] == 'u' {
						if r2, ok := hex4(body[i+3:]); ok {
							if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
								dst = utf8.AppendRune(dst, dec)
								i += 7
								continue
							}
						}
					}
					r = utf8.RuneError
				}
				dst = utf8.AppendRune(dst, r)
			default:
				return dst, false
			}
			i++
		case c < 0x20:
			return dst, false
		case c < utf8.RuneSelf:
			dst = append(dst, c)
			i++
		default:
			r, size := utf8.DecodeRune(body[i:])
			if r == utf8.RuneError && size == 1 {
				return dst, false
			}
			dst = append(dst, body[i:i+size]...)
			i += size
		}
	}
	return dst, true
}

func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}
