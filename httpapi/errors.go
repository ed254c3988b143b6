package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/httpapi/wire"
)

// CodeMethodNotAllowed is the error of a request whose path is a route
// that does not take its method (405, with Allow). It is the HTTP layer's
// own: no domain operation fails with it.
const CodeMethodNotAllowed agentstream.Code = "method_not_allowed"

// CodeRequestTimeout is the error of a request whose body did not arrive
// within Options.BodyTimeout (408). The HTTP layer's own too.
const CodeRequestTimeout agentstream.Code = "request_timeout"

// statusOf is the one table from domain error codes to HTTP statuses.
var statusOf = map[agentstream.Code]int{
	agentstream.CodeInvalidRequest:  http.StatusBadRequest,
	agentstream.CodeUnauthorized:    http.StatusUnauthorized,
	agentstream.CodeNotFound:        http.StatusNotFound,
	CodeMethodNotAllowed:            http.StatusMethodNotAllowed,
	CodeRequestTimeout:              http.StatusRequestTimeout,
	CodeUnsupportedMediaType:        http.StatusUnsupportedMediaType,
	CodeMisdirected:                 http.StatusMisdirectedRequest,
	agentstream.CodeConflict:        http.StatusConflict,
	agentstream.CodeTooLarge:        http.StatusRequestEntityTooLarge,
	agentstream.CodeGone:            http.StatusGone,
	agentstream.CodeOverloaded:      http.StatusTooManyRequests,
	agentstream.CodeUnavailable:     http.StatusServiceUnavailable,
	agentstream.CodeInternal:        http.StatusInternalServerError,
	agentstream.CodeUpstream:        http.StatusBadGateway,
	agentstream.CodeUpstreamTimeout: http.StatusGatewayTimeout,
	agentstream.CodeRateLimited:     http.StatusBadGateway,
	agentstream.CodeMaxTurns:        http.StatusUnprocessableEntity,
	agentstream.CodeCancelled:       http.StatusConflict,
	agentstream.CodeInterrupted:     http.StatusServiceUnavailable,
	agentstream.CodeUserRateLimited: http.StatusTooManyRequests,
	agentstream.CodeTooManyRuns:     http.StatusTooManyRequests,
	agentstream.CodeTooManyQueued:   http.StatusTooManyRequests,
	agentstream.CodeBudgetExceeded:  http.StatusTooManyRequests,
}

// HTTPStatus returns the status an error is answered with.
func HTTPStatus(err error) int {
	if s, ok := statusOf[agentstream.CodeOf(err)]; ok {
		return s
	}
	return http.StatusInternalServerError
}

type errorBody struct {
	Error agentstream.ErrorInfo `json:"error"`
}

// writeError answers with {"error": {"code", "message"}}. Internal causes
// are logged, never sent. A request whose client has left is not
// answered: whatever failed (a store call cut short by the request's
// context, say, while an enqueued run waited) failed because the client
// left, which is logged as such, at debug level.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	e := agentstream.AsError(err)
	// A body that timed out ends the request's context too; that client
	// is slow, not gone.
	if r.Context().Err() != nil && e.Code != CodeRequestTimeout {
		s.logger.Debug("the client left before its request was answered", "method", r.Method, "path", r.URL.Path, "err", err)
		return
	}
	status := HTTPStatus(e)
	if status >= 500 {
		s.logger.Error("request failed", "method", r.Method, "path", r.URL.Path, "status", status, "err", err)
	}
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", retryAfter(e.RetryAfter))
	}
	switch e.Code {
	case CodeRequestTimeout:
		// What is left of the body must not be read as the next request.
		w.Header().Set("Connection", "close")
	case agentstream.CodeOverloaded, agentstream.CodeUnavailable:
		w.Header().Set("Retry-After", "1")
	case agentstream.CodeUnauthorized:
		w.Header().Set("WWW-Authenticate", `Bearer realm="agentstream"`)
	}
	if openAIRoutes[r.Pattern] {
		writeJSON(w, status, wire.NewOpenAIError(e.Code, e.Message))
		return
	}
	writeJSON(w, status, errorBody{Error: *e.Info()})
}

// retryAfter is a Retry-After value: whole seconds, rounded up, at least 1.
func retryAfter(d time.Duration) string {
	return strconv.FormatInt(max(int64((d+time.Second-1)/time.Second), 1), 10)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	// An API answer, not HTML: "<key>" reads as itself, not \u003ckey\u003e.
	enc.SetEscapeHTML(false)
	// The client may be gone; nothing useful can be done about it here.
	_ = enc.Encode(v)
}

// decodeBody decodes a JSON request body, which must be an object, into
// v. With strict, unknown fields are errors. Every failure is an
// *agentstream.Error that names the problem.
func (s *Server) decodeBody(w http.ResponseWriter, r *http.Request, v any, strict bool) error {
	// Read whole (within the limit): checkBody needs the text as sent.
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes))
	if err != nil {
		return s.bodyError(err)
	}
	if err := checkJSONDepth(data); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		return s.bodyError(err)
	}
	if dec.More() {
		return agentstream.Errorf(agentstream.CodeInvalidRequest, "the request body has data after its JSON object")
	}
	return checkBody(data)
}

func (s *Server) bodyError(err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return agentstream.Errorf(CodeRequestTimeout, "the request body did not arrive within %s", s.opts.BodyTimeout)
	}
	return bodyError(err, s.opts.MaxBodyBytes)
}

func bodyError(err error, limit int64) error {
	var (
		maxErr    *http.MaxBytesError
		syntaxErr *json.SyntaxError
		typeErr   *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &maxErr):
		return agentstream.Errorf(agentstream.CodeTooLarge, "the request body is larger than %d bytes", limit)
	case errors.Is(err, io.EOF):
		return agentstream.Errorf(agentstream.CodeInvalidRequest, "the request body is empty: a JSON object is expected")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return agentstream.Errorf(agentstream.CodeInvalidRequest, "malformed JSON: the body ends in the middle of a value")
	case errors.As(err, &syntaxErr):
		return agentstream.Errorf(agentstream.CodeInvalidRequest, "malformed JSON at byte %d: %v", syntaxErr.Offset, syntaxErr)
	case errors.As(err, &typeErr):
		if typeErr.Field == "" {
			return agentstream.Errorf(agentstream.CodeInvalidRequest, "the request body must be a JSON object, not %s", typeErr.Value)
		}
		return agentstream.Errorf(agentstream.CodeInvalidRequest, "field %q must be %s, not %s", typeErr.Field, jsonType(typeErr.Type.Kind().String()), typeErr.Value)
	}
	if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return agentstream.Errorf(agentstream.CodeInvalidRequest, "unknown field %s in the request body", f)
	}
	return agentstream.Errorf(agentstream.CodeInvalidRequest, "invalid request body: %v", err)
}

func jsonType(kind string) string {
	switch kind {
	case "string":
		return "a string"
	case "map", "struct":
		return "an object"
	case "slice", "array":
		return "an array"
	case "bool":
		return "a boolean"
	case "int", "int64", "float64", "int32":
		return "a number"
	}
	return fmt.Sprintf("of type %s", kind)
}
