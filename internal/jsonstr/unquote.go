package jsonstr

import (
	"unicode/utf16"
	"unicode/utf8"
)

// Body splits b, which starts just after a JSON string's opening quote,
// at the string's closing quote: the body (still escaped) and what
// follows the quote. ok is false when b holds no closing quote.
func Body(b []byte) (body, rest []byte, ok bool) {
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

// Plain reports whether a JSON string's body is its text as it is: no
// escapes, no control characters, valid UTF-8.
func Plain(body []byte) bool {
	for _, c := range body {
		if c < 0x20 || c == '\\' {
			return false
		}
	}
	return utf8.Valid(body)
}

// Unquote appends the text of a JSON string's body (Body) to dst as
// encoding/json decodes it: escapes resolved, a lone UTF-16 surrogate and
// invalid UTF-8 as U+FFFD. ok is false when body is not valid JSON (a raw
// control character, an unknown escape, a \u without four hex digits).
// The per-token decoders (a model's chunks, a message.delta's data) share
// it.
func Unquote(dst, body []byte) ([]byte, bool) {
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
				r, ok := Hex4(body[i+1:])
				if !ok {
					return dst, false
				}
				i += 4
				if utf16.IsSurrogate(r) {
					// A high half followed by a low half is one rune;
					// a half alone is U+FFFD, as encoding/json has it.
					if len(body) > i+2 && body[i+1] == '\\' && body[i+2] == 'u' {
						if r2, ok := Hex4(body[i+3:]); ok {
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
				dst = utf8.AppendRune(dst, utf8.RuneError)
			} else {
				dst = append(dst, body[i:i+size]...)
			}
			i += size
		}
	}
	return dst, true
}

// Hex4 decodes the four hex digits b starts with.
func Hex4(b []byte) (rune, bool) {
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
