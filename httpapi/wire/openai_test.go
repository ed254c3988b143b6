package wire

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"testing"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/internal/sse"
)

// TestOpenAIAnswerMatchesStream: the whole chat.completion a run answers
// holds the text its stream's chunks add up to, with the same
// finish_reason: "length" from the last model call, "stop" for any other.
func TestOpenAIAnswerMatchesStream(t *testing.T) {
	t.Parallel()
	for seed := range uint64(200) {
		evs := randomRun(seed)
		if seed%3 == 0 {
			// The last model call was cut at its token limit.
			last := evs[len(evs)-1]
			evs = append(evs[:len(evs)-1], ev(last.Seq, agentstream.EventStepCompleted, agentstream.StepCompletedData{Step: 9, FinishReason: "length"}))
			last.Seq++
			evs = append(evs, last)
		}
		stream := encodeStream("openai", evs, 0, true)
		var content strings.Builder
		finish := ""
		r := sse.NewReader(bytes.NewReader(stream))
		for {
			e, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			var c struct {
				Choices []struct {
					Delta        struct{ Content string }
					FinishReason *string `json:"finish_reason"`
				}
			}
			if e.Data == "[DONE]" || json.Unmarshal([]byte(e.Data), &c) != nil {
				continue
			}
			for _, ch := range c.Choices {
				content.WriteString(ch.Delta.Content)
				if ch.FinishReason != nil {
					finish = *ch.FinishReason
				}
			}
		}
		var a OpenAIAnswer
		for _, e := range evs {
			a.Add(e)
		}
		if a.Content() != content.String() {
			t.Fatalf("seed %d: answer %q, stream %q", seed, a.Content(), content.String())
		}
		if a.End == nil {
			t.Fatalf("seed %d: no end", seed)
		}
		if evs[len(evs)-1].Type == agentstream.EventRunCompleted {
			if finish != a.FinishReason() {
				t.Fatalf("seed %d: stream finish %q, answer %q", seed, finish, a.FinishReason())
			}
			if want := map[bool]string{true: "length", false: "stop"}[seed%3 == 0]; finish != want {
				t.Fatalf("seed %d: finish %q, want %q", seed, finish, want)
			}
		}
	}
}

func TestOpenAIErrorTypes(t *testing.T) {
	t.Parallel()
	for code, want := range map[agentstream.Code]string{
		agentstream.CodeInvalidRequest: "invalid_request_error",
		agentstream.CodeNotFound:       "invalid_request_error",
		agentstream.CodeUnauthorized:   "authentication_error",
		agentstream.CodeOverloaded:     "rate_limit_error",
		agentstream.CodeUpstream:       "server_error",
	} {
		got := NewOpenAIError(code, "m").Error
		if got.Type != want || got.Code != string(code) || got.Message != "m" || got.Param != nil {
			t.Errorf("%s: %+v, want type %s", code, got, want)
		}
	}
}
