package bench

import (
	"encoding/json"
	"strings"

	"github.com/agentstream/agentstream/sim"
)

// maxStampDigits bounds a stamp's digits: an int64 of microseconds has at
// most 19.
const maxStampDigits = 19

// ParseStamps appends to dst the stamps of the stamped tokens in text (a
// delta or several joined) and returns it. A stamped token is the word
// "t" followed by the decimal Unix time in microseconds of its sending,
// with sim.Prefix glued before the first token of a reply (see
// sim.AppendStampToken). Words that are not stamps are skipped, so an
// unstamped reply has none.
func ParseStamps(text string, dst []int64) []int64 {
	for len(text) > 0 {
		// Skip whitespace, then take one word.
		i := 0
		for i < len(text) && isSpace(text[i]) {
			i++
		}
		j := i
		for j < len(text) && !isSpace(text[j]) {
			j++
		}
		if us, ok := parseStamp(text[i:j]); ok {
			dst = append(dst, us)
		}
		text = text[j:]
	}
	return dst
}

// parseStamp parses one word as a stamp.
func parseStamp(word string) (int64, bool) {
	word = strings.TrimPrefix(word, sim.Prefix)
	if len(word) < 2 || word[0] != sim.StampTag || len(word)-1 > maxStampDigits || (word[1] == '0' && len(word) > 2) {
		return 0, false // not a stamp, or not in its canonical form (leading zeros)
	}
	var us int64
	for k := 1; k < len(word); k++ {
		c := word[k]
		if c < '0' || c > '9' {
			return 0, false
		}
		d := int64(c - '0')
		if us > (1<<63-1-d)/10 {
			return 0, false // overflows int64
		}
		us = us*10 + d
	}
	return us, true
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

// nativeDelta is the data of a native message.delta event.
type nativeDelta struct {
	MessageID string `json:"message_id"`
	Delta     string `json:"delta"`
}

// ParseNativeDelta returns the text of a native stream's message.delta
// event data: {"message_id": "…", "delta": "…"}.
func ParseNativeDelta(data string) (string, error) {
	var d nativeDelta
	if err := json.Unmarshal([]byte(data), &d); err != nil {
		return "", err
	}
	return d.Delta, nil
}

// SeedChunk is one data line of the seed stream (POST /v1/chat).
type SeedChunk struct {
	Delta    *string `json:"delta"`
	Complete bool    `json:"complete"`
	Response *string `json:"response"`
	Error    *string `json:"error"`
	Code     string  `json:"code"`
	Status   string  `json:"status"`
	Tool     string  `json:"tool"`
}

// ParseSeedChunk decodes one data line of the seed stream.
func ParseSeedChunk(data string) (SeedChunk, error) {
	var c SeedChunk
	err := json.Unmarshal([]byte(data), &c)
	return c, err
}

// ParseCompletionChunk returns the content of a streamed chat completions
// chunk (choices[0].delta.content), and whether data is the stream's end,
// "[DONE]".
func ParseCompletionChunk(data string) (content string, done bool, err error) {
	if data == "[DONE]" {
		return "", true, nil
	}
	var c struct {
		Choices []struct {
			Delta struct {
				Content string `json:"content"`
			} `json:"delta"`
		} `json:"choices"`
	}
	if err := json.Unmarshal([]byte(data), &c); err != nil {
		return "", false, err
	}
	if len(c.Choices) > 0 {
		content = c.Choices[0].Delta.Content
	}
	return content, false, nil
}
