package agentstream

import (
	"encoding/json"
	"strings"
	"unicode/utf8"
)

// What every Store can keep, identically. PostgreSQL refuses NUL
// characters and invalid UTF-8 in text (and \u0000 in jsonb), and cannot
// index a key over about 2.7 kB; SQLite would keep all of them. The stores
// check values against these rules before writing, so that both refuse
// the same values with ErrInvalid.

// MaxIDBytes is the longest ID (of a thread, run or message) a Store
// keeps. The API's own ids are far shorter: 30 bytes for the ones it
// makes, 128 for one a client chooses.
const MaxIDBytes = 256

// ValidText reports whether s can be stored as text by every Store:
// valid UTF-8 without NUL characters.
func ValidText(s string) bool {
	return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0
}

// ValidID reports whether s can be an ID in every Store: text (ValidText)
// of at most MaxIDBytes bytes.
func ValidID(s string) bool { return len(s) <= MaxIDBytes && ValidText(s) }

func checkText(field, s string) error {
	switch {
	case !utf8.ValidString(s):
		return Errorf(CodeInvalidRequest, "%s is not valid UTF-8", field)
	case strings.IndexByte(s, 0) >= 0:
		return Errorf(CodeInvalidRequest, "%s holds a NUL character", field)
	}
	return nil
}

func checkID(field, s string) error {
	if len(s) > MaxIDBytes {
		return Errorf(CodeInvalidRequest, "%s is longer than %d bytes", field, MaxIDBytes)
	}
	return checkText(field, s)
}

// checkJSON refuses a NUL character in any key or string of v, a value
// stored as JSON. Invalid UTF-8 needs no check there: encoding/json
// replaces it (with U+FFFD) before any store sees it, the same for all.
func checkJSON(field string, v any) error {
	if jsonHasNUL(v) {
		return Errorf(CodeInvalidRequest, "%s holds a NUL character", field)
	}
	return nil
}

func jsonHasNUL(v any) bool {
	switch v := v.(type) {
	case nil, bool, float64, json.Number:
		return false
	case string:
		return strings.IndexByte(v, 0) >= 0
	case map[string]any:
		for k, x := range v {
			if strings.IndexByte(k, 0) >= 0 || jsonHasNUL(x) {
				return true
			}
		}
		return false
	case []any:
		for _, x := range v {
			if jsonHasNUL(x) {
				return true
			}
		}
		return false
	}
	// Any other Go value is checked as encoding/json writes it; one it
	// cannot encode is the store's error to report.
	b, err := json.Marshal(v)
	return err == nil && hasNULEscape(b)
}

// hasNULEscape reports whether JSON text b holds the escape \u0000: one
// whose backslash is not itself escaped (\\u0000 is a backslash, then
// "u0000").
func hasNULEscape(b []byte) bool {
	s := string(b)
	for {
		i := strings.Index(s, `\u0000`)
		if i < 0 {
			return false
		}
		n := 0 // backslashes before this one
		for j := i - 1; j >= 0 && s[j] == '\\'; j-- {
			n++
		}
		if n%2 == 0 {
			return true
		}
		s = s[i+1:]
	}
}

// Check returns ErrInvalid, naming the field, when a store cannot keep t
// as given (MaxIDBytes, ValidText, and no NUL in Metadata or Context).
func (t Thread) Check() error {
	for _, f := range []struct {
		name, v string
		id      bool
	}{
		{"thread id", t.ID, true}, {"thread client id", t.ClientID, true},
		{"thread user id", t.UserID, false}, {"thread agent", t.Agent, false}, {"thread title", t.Title, false},
	} {
		check := checkText
		if f.id {
			check = checkID
		}
		if err := check(f.name, f.v); err != nil {
			return err
		}
	}
	if err := checkJSON("thread metadata", t.Metadata); err != nil {
		return err
	}
	return checkJSON("thread context", t.Context)
}

// Check returns ErrInvalid, naming the field, when a store cannot create
// r as given.
func (r Run) Check() error {
	for _, f := range []struct {
		name, v string
		id      bool
	}{
		{"run id", r.ID, true}, {"run thread id", r.ThreadID, true},
		{"run user id", r.UserID, false}, {"run agent", r.Agent, false}, {"run owner", r.Owner, false},
	} {
		check := checkText
		if f.id {
			check = checkID
		}
		if err := check(f.name, f.v); err != nil {
			return err
		}
	}
	if r.Error != nil {
		if err := checkText("run error code", string(r.Error.Code)); err != nil {
			return err
		}
		if err := checkText("run error message", r.Error.Message); err != nil {
			return err
		}
	}
	return checkJSON("run context", r.Context)
}

// Check returns ErrInvalid, naming the field, when a store cannot keep m
// as given.
func (m Message) Check() error {
	if err := checkID("message id", m.ID); err != nil {
		return err
	}
	for _, f := range []struct{ name, v string }{
		{"message content", m.Content}, {"message tool call id", m.ToolCallID}, {"message tool name", m.ToolName},
	} {
		if err := checkText(f.name, f.v); err != nil {
			return err
		}
	}
	for _, c := range m.ToolCalls {
		for _, f := range []struct{ name, v string }{
			{"tool call id", c.ID}, {"tool call name", c.Name}, {"tool call argument text", c.Arguments},
		} {
			if err := checkText(f.name, f.v); err != nil {
				return err
			}
		}
	}
	return nil
}

// CheckID returns ErrInvalid, naming the field, when s cannot be an ID in
// every store (ValidID).
func CheckID(field, s string) error { return checkID(field, s) }

// StorableText returns s as every Store keeps it: invalid UTF-8 and NUL
// characters replaced by U+FFFD. Text a model or a tool wrote is made
// storable this way before it is saved, rather than refused: a run's
// answer is never lost to a stray byte.
func StorableText(s string) string {
	if ValidText(s) {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

// Storable returns m with its text made storable (StorableText).
func (m Message) Storable() Message {
	m.Content, m.ToolCallID, m.ToolName = StorableText(m.Content), StorableText(m.ToolCallID), StorableText(m.ToolName)
	if len(m.ToolCalls) > 0 {
		calls := make([]ToolCall, len(m.ToolCalls))
		for i, c := range m.ToolCalls {
			calls[i] = ToolCall{ID: StorableText(c.ID), Name: StorableText(c.Name), Arguments: StorableText(c.Arguments)}
		}
		m.ToolCalls = calls
	}
	return m
}
