package sim

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/agentstream/agentstream/internal/jsonstr"
)

// Prefix starts every text the default policy produces.
const Prefix = "[simulated]"

// words is the word list the default generated text cycles through.
var words = strings.Fields("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor " +
	"incididunt ut labore et dolore magna aliqua ut enim ad minim veniam quis nostrud exercitation")

// DefaultText returns the default generated reply of n tokens (at least 1):
// "[simulated] lorem ipsum dolor …". Every token is a word and the space
// after it, except the last, which has no trailing space, so
// len(Split(DefaultText(n))) == n.
func DefaultText(n int) string {
	if n < 1 {
		n = 1
	}
	var b strings.Builder
	b.Grow(n * 7)
	b.WriteString(Prefix)
	for i := 1; i < n; i++ {
		b.WriteByte(' ')
		b.WriteString(words[(i-1)%len(words)])
	}
	return b.String()
}

// StampText returns the stamped reply of n tokens (at least 1) with every
// token stamped t: what a non-streamed reply carries with Options.Stamp.
func StampText(n int, t time.Time) string {
	n = max(n, 1)
	buf := make([]byte, 0, n*18+len(Prefix))
	for i := range n {
		buf = AppendStampToken(buf, i, n, t)
	}
	return string(buf)
}

// StampTag starts the stamp of a stamped token; the decimal Unix time in
// microseconds follows it.
const StampTag = 't'

// AppendStampToken appends token i (from 0) of a stamped reply of n tokens,
// sent at t, to buf. With Options.Stamp the default generated reply is
// made of these instead of words: each token is StampTag and the Unix time
// in microseconds at which the simulator writes its chunk, then a space,
// except the last token, which has none; the first token keeps the Prefix
// glued to its stamp, so the reply still starts with "[simulated]":
//
//	[simulated]t1767225600000000 t1767225600050012 t1767225600100031
//
// Every token is one word, so len(Split(reply)) == n as with DefaultText.
// A client that receives a token subtracts its stamp from the time of
// receipt: the delay from the simulator to that client, exactly, when
// both run on one clock (one machine). `agentstream bench` does that.
func AppendStampToken(buf []byte, i, n int, t time.Time) []byte {
	if i == 0 {
		buf = append(buf, Prefix...)
	}
	buf = append(buf, StampTag)
	buf = strconv.AppendInt(buf, t.UnixMicro(), 10)
	if i < n-1 {
		buf = append(buf, ' ')
	}
	return buf
}

// Split cuts text into the tokens the simulator streams: each token is a
// word and the whitespace after it (whitespace before the first word goes
// with the first token). Joined, the tokens are text exactly. Empty text
// has no tokens.
func Split(text string) []string {
	var toks []string
	for len(text) > 0 {
		n := nextToken(text)
		toks = append(toks, text[:n])
		text = text[n:]
	}
	return toks
}

// nextToken returns the length of text's first token; text is not empty.
func nextToken(text string) int {
	i := 0
	// Leading whitespace, then the word, then the whitespace after it.
	for _, inSpace := range [3]bool{true, false, true} {
		for i < len(text) {
			r, size := utf8.DecodeRuneInString(text[i:])
			if unicode.IsSpace(r) != inSpace {
				break
			}
			i += size
		}
	}
	return i
}

// countWords counts whitespace-separated words without allocating.
func countWords(s string) int {
	n := 0
	inWord := false
	for _, r := range s {
		if unicode.IsSpace(r) {
			inWord = false
		} else if !inWord {
			inWord = true
			n++
		}
	}
	return n
}

// PromptTokens is the prompt_tokens the simulator reports for r: one per
// message plus the whitespace-separated words of every message's content
// and of its tool calls' names and arguments.
func PromptTokens(r *Request) int {
	n := 0
	for _, m := range r.Messages {
		n += 1 + countWords(m.Content)
		for _, tc := range m.ToolCalls {
			n += countWords(tc.Name) + countWords(tc.Arguments)
		}
	}
	return n
}

// Default returns the default policy's content for r (the other fields are
// left zero, to inherit):
//   - when the last message is a tool result, Text is "[simulated] " and,
//     for each tool message of the trailing run, "The tool NAME returned:
//     CONTENT." with the content verbatim;
//   - when the request offers tools and the last message is a user message
//     whose content contains tool names (a case-sensitive substring match),
//     ToolCalls has one call per mentioned tool, in the order of the tools
//     array, with arguments from SampleArguments and no ID (the server
//     assigns one);
//   - otherwise both are empty, which means DefaultText of the request's
//     token count.
func Default(r *Request) Behavior {
	last := r.LastMessage()
	switch last.Role {
	case "tool":
		return Behavior{Text: toolResultText(r.Messages)}
	case "user":
		var calls []ToolCallSpec
		for _, t := range r.Tools {
			if t.Name != "" && strings.Contains(last.Content, t.Name) {
				calls = append(calls, ToolCallSpec{Name: t.Name, Arguments: SampleArguments(t.Parameters)})
			}
		}
		return Behavior{ToolCalls: calls}
	}
	return Behavior{}
}

// toolResultText is the reply to a trailing run of tool messages.
func toolResultText(msgs []Message) string {
	start := len(msgs)
	for start > 0 && msgs[start-1].Role == "tool" {
		start--
	}
	// The names of the calls come from the assistant message before the run.
	names := map[string]string{}
	for i := start - 1; i >= 0; i-- {
		if msgs[i].Role == "assistant" {
			for _, tc := range msgs[i].ToolCalls {
				names[tc.ID] = tc.Name
			}
			break
		}
	}
	var b strings.Builder
	b.WriteString(Prefix)
	for _, m := range msgs[start:] {
		name := names[m.ToolCallID]
		if name == "" {
			name = m.Name
		}
		if name == "" {
			name = m.ToolCallID
		}
		b.WriteString(" The tool ")
		b.WriteString(name)
		if strings.TrimSpace(m.Content) == "" {
			b.WriteString(" returned nothing.")
			continue
		}
		b.WriteString(" returned: ")
		b.WriteString(m.Content)
		if !strings.HasSuffix(m.Content, ".") {
			b.WriteByte('.')
		}
	}
	return b.String()
}

// schema is the part of a JSON Schema SampleArguments reads.
type schema struct {
	Type       json.RawMessage            `json:"type"`
	Properties map[string]json.RawMessage `json:"properties"`
	Required   []string                   `json:"required"`
	Const      json.RawMessage            `json:"const"`
	Examples   []json.RawMessage          `json:"examples"`
	Default    json.RawMessage            `json:"default"`
	Enum       []json.RawMessage          `json:"enum"`
}

// maxDepth bounds the nesting of generated objects.
const maxDepth = 8

// SampleArguments returns arguments that fit the JSON Schema parameters:
// a JSON object with every required property (in the order of "required")
// set from, in order of preference, its const, examples[0], default,
// enum[0], else a sample of its type: "example" for string, 1 for integer
// and number, true for boolean, [] for array, null for null, and for
// object the same construction recursively. Properties that are not
// required are left out. Any input, even invalid, gives a JSON object.
func SampleArguments(parameters json.RawMessage) string {
	return string(sampleObject(nil, parseSchema(parameters), 0))
}

func parseSchema(raw json.RawMessage) schema {
	var s schema
	if err := json.Unmarshal(raw, &s); err != nil {
		return schema{}
	}
	return s
}

func sampleObject(buf []byte, s schema, depth int) []byte {
	buf = append(buf, '{')
	seen := map[string]bool{}
	for _, name := range s.Required {
		if seen[name] {
			continue
		}
		seen[name] = true
		if len(seen) > 1 {
			buf = append(buf, ',')
		}
		buf = jsonstr.Append(buf, name, false)
		buf = append(buf, ':')
		buf = sampleValue(buf, parseSchema(s.Properties[name]), depth+1)
	}
	return append(buf, '}')
}

func sampleValue(buf []byte, s schema, depth int) []byte {
	candidates := []json.RawMessage{s.Const}
	if len(s.Examples) > 0 {
		candidates = append(candidates, s.Examples[0])
	}
	candidates = append(candidates, s.Default)
	if len(s.Enum) > 0 {
		candidates = append(candidates, s.Enum[0])
	}
	for _, c := range candidates {
		if len(c) == 0 {
			continue
		}
		var out bytes.Buffer
		if json.Compact(&out, c) == nil {
			return append(buf, out.Bytes()...)
		}
	}
	switch schemaType(s) {
	case "integer", "number":
		return append(buf, '1')
	case "boolean":
		return append(buf, "true"...)
	case "array":
		return append(buf, "[]"...)
	case "null":
		return append(buf, "null"...)
	case "object":
		if depth > maxDepth {
			return append(buf, "{}"...)
		}
		return sampleObject(buf, s, depth)
	}
	return append(buf, `"example"`...)
}

// schemaType returns the schema's type: the first non-null of a type list,
// "object" for an untyped schema with properties, "" when unknown.
func schemaType(s schema) string {
	var one string
	var many []string
	switch {
	case json.Unmarshal(s.Type, &one) == nil:
		return one
	case json.Unmarshal(s.Type, &many) == nil:
		for _, t := range many {
			if t != "null" {
				return t
			}
		}
		if len(many) > 0 {
			return "null"
		}
	}
	if s.Properties != nil || len(s.Required) > 0 {
		return "object"
	}
	return ""
}
