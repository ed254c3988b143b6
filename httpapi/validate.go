package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/agentstream/agentstream"
)

// The API's rules for ids and text, the same whatever the store
// (docs/protocol.md, "Ids and text"). The stores refuse the same values
// (agentstream.ValidText, MaxIDBytes) as a second line.

// maxClientIDBytes is the longest thread id a client may choose.
const maxClientIDBytes = 128

// validClientID reports whether id may name a new thread a client chooses:
// 1 to maxClientIDBytes bytes of A-Z, a-z, 0-9, '.', '_', ':' and '-',
// and not "." or ".." (which a URL path cannot carry as a segment). Such
// an id is safe as it is in a path, a header and a log line.
func validClientID(id string) bool {
	if id == "" || len(id) > maxClientIDBytes || id == "." || id == ".." {
		return false
	}
	for i := range len(id) {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-') {
			return false
		}
	}
	return true
}

func checkClientID(field, id string) error {
	if validClientID(id) {
		return nil
	}
	return agentstream.Errorf(agentstream.CodeInvalidRequest,
		`field %q must be 1 to %d characters among A-Z, a-z, 0-9, ".", "_", ":" and "-" (and not "." or "..")`, field, maxClientIDBytes)
}

// lookupID reports whether id, from a path or a request, can name a thread
// or run that exists: one the server made, one a client chose, or one
// made before ids were checked (any id a store can hold). One that
// cannot is answered as not found without asking the store.
func lookupID(id string) bool { return id != "" && agentstream.ValidID(id) }

// checkBody checks a request body that decoded: it must be a JSON object
// (not null, which decodes into anything without an error), and its
// strings and keys must be text every store keeps.
func checkBody(data []byte) error {
	if t := bytes.TrimLeft(data, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return agentstream.Errorf(agentstream.CodeInvalidRequest, "the request body must be a JSON object, not %s", firstWord(t))
	}
	return checkJSONText(data)
}

// firstWord names a JSON value by its start, for an error message.
func firstWord(t []byte) string {
	switch {
	case len(t) == 0:
		return "nothing"
	case t[0] == 'n':
		return "null"
	case t[0] == '[':
		return "an array"
	case t[0] == '"':
		return "a string"
	case t[0] == 't' || t[0] == 'f':
		return "a boolean"
	}
	return "a number"
}

// checkJSONText returns a CodeInvalidRequest error naming the first string
// or key of data, a valid JSON text, that holds what the stores cannot
// keep, or that encoding/json would silently change: a NUL character
// (\u0000), invalid UTF-8, or a UTF-16 surrogate escape without its other
// half (both of which encoding/json turns into U+FFFD). Nil otherwise.
func checkJSONText(data []byte) error {
	// All three need a \u escape or a byte that is not UTF-8: most bodies
	// have neither.
	if utf8.Valid(data) && !bytes.Contains(data, []byte(`\u`)) {
		return nil
	}
	s := textScanner{data: data}
	return s.value()
}

// textScanner walks a JSON text, keeping the path to the value it is in.
// It assumes valid JSON (the body has decoded) and, given anything else,
// stops without reporting.
type textScanner struct {
	data []byte
	i    int
	path []pathElem
}

// pathElem is an object key (the raw literal, quotes included) or an
// array index.
type pathElem struct {
	key   []byte
	index int
}

func (s *textScanner) space() {
	for s.i < len(s.data) {
		switch s.data[s.i] {
		case ' ', '\t', '\r', '\n':
			s.i++
		default:
			return
		}
	}
}

func (s *textScanner) value() error {
	s.space()
	if s.i >= len(s.data) {
		return nil
	}
	switch s.data[s.i] {
	case '{':
		s.i++
		for {
			s.space()
			if s.i >= len(s.data) {
				return nil
			}
			switch s.data[s.i] {
			case '}':
				s.i++
				return nil
			case ',':
				s.i++
				continue
			case '"':
			default:
				return nil // not JSON
			}
			start := s.i
			if err := s.str(true); err != nil {
				return err
			}
			key := s.data[start:s.i]
			s.space()
			if s.i >= len(s.data) || s.data[s.i] != ':' {
				return nil // not JSON
			}
			s.i++
			if err := s.elem(pathElem{key: key}); err != nil {
				return err
			}
		}
	case '[':
		s.i++
		for n := 0; ; n++ {
			s.space()
			if s.i >= len(s.data) {
				return nil
			}
			switch s.data[s.i] {
			case ']':
				s.i++
				return nil
			case ',':
				s.i++
			}
			if err := s.elem(pathElem{index: n}); err != nil {
				return err
			}
		}
	case '"':
		return s.str(false)
	}
	// A number, true, false or null.
	start := s.i
	for s.i < len(s.data) && bytes.IndexByte([]byte(",]} \t\r\n"), s.data[s.i]) < 0 {
		s.i++
	}
	if s.i == start {
		s.i = len(s.data) // not JSON: stop
	}
	return nil
}

// elem scans the value at e in the current object or array. A value that
// does not advance the scan is not JSON: the scan stops.
func (s *textScanner) elem(e pathElem) error {
	s.path = append(s.path, e)
	start := s.i
	err := s.value()
	s.path = s.path[:len(s.path)-1]
	if err == nil && s.i == start {
		s.i = len(s.data)
	}
	return err
}

// str scans the string literal at s.i (a key when key is set).
func (s *textScanner) str(key bool) error {
	s.i++ // the opening quote
	for s.i < len(s.data) {
		c := s.data[s.i]
		switch {
		case c == '"':
			s.i++
			return nil
		case c == '\\':
			if s.i+1 < len(s.data) && s.data[s.i+1] == 'u' {
				r, ok := hex4(s.data, s.i+2)
				if !ok {
					s.i = len(s.data) // not JSON
					return nil
				}
				s.i += 6
				switch {
				case r == 0:
					return s.fail(key, "holds a NUL character (\\u0000), which cannot be stored")
				case 0xD800 <= r && r < 0xDC00: // a high surrogate: a low one must follow
					if s.i+1 < len(s.data) && s.data[s.i] == '\\' && s.data[s.i+1] == 'u' {
						if lo, ok := hex4(s.data, s.i+2); ok && 0xDC00 <= lo && lo < 0xE000 {
							s.i += 6
							continue
						}
					}
					return s.fail(key, fmt.Sprintf("holds \\u%04x, half of a UTF-16 surrogate pair without its other half, which is not text", r))
				case 0xDC00 <= r && r < 0xE000:
					return s.fail(key, fmt.Sprintf("holds \\u%04x, half of a UTF-16 surrogate pair without its other half, which is not text", r))
				}
				continue
			}
			s.i = min(s.i+2, len(s.data))
		case c < utf8.RuneSelf:
			s.i++
		default:
			r, size := utf8.DecodeRune(s.data[s.i:])
			if r == utf8.RuneError && size == 1 {
				return s.fail(key, "is not valid UTF-8")
			}
			s.i += size
		}
	}
	return nil
}

// hex4 decodes the four hex digits at data[i:].
func hex4(data []byte, i int) (rune, bool) {
	if i+4 > len(data) {
		return 0, false
	}
	n, err := strconv.ParseUint(string(data[i:i+4]), 16, 32)
	return rune(n), err == nil
}

// fail returns the error of the string being scanned, named by its path:
// `field "metadata.tags[2]" …`, or `a key in field "metadata" …`.
func (s *textScanner) fail(key bool, what string) error {
	name := s.pathString()
	switch {
	case key && name == "":
		name = "a field name"
	case key:
		name = fmt.Sprintf("a key in field %q", name)
	case name == "":
		name = "the request body"
	default:
		name = fmt.Sprintf("field %q", name)
	}
	return agentstream.Errorf(agentstream.CodeInvalidRequest, "%s %s", name, what)
}

func (s *textScanner) pathString() string {
	var b strings.Builder
	for i, e := range s.path {
		if e.key == nil {
			fmt.Fprintf(&b, "[%d]", e.index)
			continue
		}
		var k string
		if json.Unmarshal(e.key, &k) != nil {
			k = string(e.key)
		}
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(k)
	}
	return b.String()
}
