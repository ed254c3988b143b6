package openai

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/agentstream/agentstream"
	oai "github.com/openai/openai-go/v3"
)

func cancelled(ctx context.Context) *agentstream.Error {
	return agentstream.Wrap(agentstream.CodeCancelled, context.Cause(ctx), "model call cancelled")
}

// callError turns a failure of a call into a domain error. ctx is the
// caller's context, sctx the call's own (cancelled by the idle timer);
// streaming says whether the answer had started.
func (m *Model) callError(ctx, sctx context.Context, err error, streaming bool) *agentstream.Error {
	if ctx.Err() != nil {
		return cancelled(ctx)
	}
	if errors.Is(context.Cause(sctx), errIdle) {
		what := "model API sent no response"
		if streaming {
			what = "model stream went silent"
		}
		return agentstream.Wrap(agentstream.CodeUpstreamTimeout, err, fmt.Sprintf("%s for %v", what, m.idle))
	}
	var apiErr *oai.Error
	if errors.As(err, &apiErr) {
		msg := m.clean(apiErr.Message)
		if msg == "" {
			msg = http.StatusText(apiErr.StatusCode)
		}
		if apiErr.StatusCode == http.StatusTooManyRequests {
			return agentstream.Wrap(agentstream.CodeRateLimited, err, "model API rate limit (429): "+msg)
		}
		return agentstream.Wrap(agentstream.CodeUpstream, err, fmt.Sprintf("model API returned %d: %s", apiErr.StatusCode, msg))
	}
	var streamErr *streamError
	if errors.As(err, &streamErr) {
		return agentstream.Wrap(agentstream.CodeUpstream, err, "model stream sent an error: "+m.clean(streamErr.message()))
	}
	if streaming {
		return agentstream.Wrap(agentstream.CodeUpstream, err, "model stream ended early: "+m.clean(describe(err)))
	}
	return agentstream.Wrap(agentstream.CodeUpstream, err, "model API request failed: "+m.clean(describe(err)))
}

// describe says what went wrong without the request's URL.
func describe(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return "connection closed mid-stream (unexpected EOF)"
	}
	return err.Error()
}

// streamError is a chunk of the stream that reports an error:
// {"error": {"message": …, …}} or {"error": "…"}.
type streamError struct {
	raw []byte // the error member's JSON
}

func (e *streamError) Error() string {
	return "received error while streaming: " + string(e.raw)
}

// message extracts the error's message.
func (e *streamError) message() string {
	var obj struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(e.raw, &obj) == nil && obj.Message != "" {
		return obj.Message
	}
	var s string
	if json.Unmarshal(e.raw, &s) == nil && s != "" {
		return s
	}
	return "unknown error"
}

// maxMessage bounds the upstream text put in a client-safe message.
const maxMessage = 300

// clean makes upstream text safe to show a client: the API key and
// anything that looks like an OpenAI key ("Incorrect API key provided:
// sk-abc***xyz") are masked, and the text is cut to maxMessage bytes.
func (m *Model) clean(s string) string {
	if m.apiKey != "" {
		s = strings.ReplaceAll(s, m.apiKey, "[redacted]")
	}
	if strings.Contains(s, "sk-") {
		fields := strings.Fields(s)
		for i, f := range fields {
			if j := strings.Index(f, "sk-"); j >= 0 {
				fields[i] = f[:j] + "sk-[redacted]"
			}
		}
		s = strings.Join(fields, " ")
	}
	if len(s) > maxMessage {
		cut := maxMessage
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}
