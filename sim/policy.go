package sim

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
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
//   - when the last message is a user message and the request offers
//     tools whose names the message contains as words (not inside a longer
//     name: "current_time?" names current_time, "current_timezone" does
//     not), ToolCalls has one call per named tool, in the order of the
//     tools array, with no ID (the server assigns one): parallel tool
//     calls, streamed as OpenAI streams them, one index each. Their
//     arguments come from SampleArguments, or from WrongArguments when the
//     message contains "wrong arguments" (any case) or the request has
//     the header X-Sim-Arguments: wrong ("valid" overrides the message);
//   - when the last message is a tool result, the calls of the assistant
//     message before the trailing tool results that had WrongArguments and
//     got an error (a result starting with "error", any case) are made
//     again with SampleArguments: a corrected second attempt, once (an
//     error of the retry, or of any other call, is quoted as below);
//   - otherwise, after tool results, Text is "[simulated] " and, for each
//     tool message of the trailing run, "The tool NAME returned: CONTENT."
//     with the content verbatim;
//   - otherwise both are empty, which means DefaultText of the request's
//     token count.
func Default(r *Request) Behavior {
	last := r.LastMessage()
	switch last.Role {
	case "tool":
		if calls := retries(r); len(calls) > 0 {
			return Behavior{ToolCalls: calls}
		}
		return Behavior{Text: toolResultText(r.Messages)}
	case "user":
		wrong := wantsWrongArguments(r, last)
		var calls []ToolCallSpec
		for _, t := range r.Tools {
			if t.Name == "" || !mentions(last.Content, t.Name) {
				continue
			}
			args := SampleArguments(t.Parameters)
			if wrong {
				args = WrongArguments(t.Parameters)
			}
			calls = append(calls, ToolCallSpec{Name: t.Name, Arguments: args})
		}
		return Behavior{ToolCalls: calls}
	}
	return Behavior{}
}

// wrongPhrase in a user message asks for wrong arguments.
const wrongPhrase = "wrong argument"

// wantsWrongArguments reports whether the calls answering user message m
// get wrong arguments.
func wantsWrongArguments(r *Request, m Message) bool {
	switch r.Header.Get(HeaderArguments) {
	case "wrong":
		return true
	case "valid":
		return false
	}
	return strings.Contains(strings.ToLower(m.Content), wrongPhrase)
}

// mentions reports whether text contains name as a word: not preceded or
// followed by a character that tool names are made of.
func mentions(text, name string) bool {
	for i := 0; ; {
		j := strings.Index(text[i:], name)
		if j < 0 {
			return false
		}
		at, end := i+j, i+j+len(name)
		if (at == 0 || !nameByte(text[at-1])) && (end == len(text) || !nameByte(text[end])) {
			return true
		}
		i = at + 1
	}
}

// nameByte reports whether c is a character of tool names.
func nameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// retries are the calls to make again after the trailing tool results of
// r: those made with WrongArguments that failed, made again with
// SampleArguments.
func retries(r *Request) []ToolCallSpec {
	msgs := r.Messages
	start := len(msgs)
	for start > 0 && msgs[start-1].Role == "tool" {
		start--
	}
	if start == 0 || msgs[start-1].Role != "assistant" {
		return nil
	}
	results := map[string]string{}
	for _, m := range msgs[start:] {
		results[m.ToolCallID] = m.Content
	}
	var calls []ToolCallSpec
	for _, c := range msgs[start-1].ToolCalls {
		out, answered := results[c.ID]
		if !answered || !isErrorResult(out) {
			continue
		}
		for _, t := range r.Tools {
			if t.Name != c.Name {
				continue
			}
			if sameJSON(json.RawMessage(WrongArguments(t.Parameters)), json.RawMessage(c.Arguments)) {
				calls = append(calls, ToolCallSpec{Name: t.Name, Arguments: SampleArguments(t.Parameters)})
			}
			break
		}
	}
	return calls
}

// isErrorResult reports whether a tool's output says it failed: it starts
// with "error" (agentstream's "error: …", and most tools' own).
func isErrorResult(out string) bool {
	out = strings.TrimSpace(out)
	return len(out) >= 5 && strings.EqualFold(out[:5], "error")
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
