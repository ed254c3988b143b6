package agentstream

import (
	"errors"
	"fmt"
	"time"
)

// Code names a kind of error. Codes are part of the API: they appear in
// error bodies ({"error": {"code", "message"}}) and in failed runs.
type Code string

// Error codes. httpapi maps each to one HTTP status.
const (
	CodeInvalidRequest  Code = "invalid_request"     // 400: malformed or invalid input
	CodeUnauthorized    Code = "unauthorized"        // 401: missing or bad credential
	CodeNotFound        Code = "not_found"           // 404: unknown, or someone else's
	CodeConflict        Code = "conflict"            // 409: e.g. the thread already has an active run
	CodeTooLarge        Code = "request_too_large"   // 413: request body over the limit
	CodeGone            Code = "events_gone"         // 410: the events asked for are no longer kept
	CodeOverloaded      Code = "overloaded"          // 429: worker pool and queue are full
	CodeUnavailable     Code = "unavailable"         // 503: shutting down, or a backing service is down
	CodeInternal        Code = "internal"            // 500: a bug or an unexpected failure
	CodeUpstream        Code = "upstream_error"      // the model API failed
	CodeUpstreamTimeout Code = "upstream_timeout"    // the model API went silent
	CodeRateLimited     Code = "upstream_rate_limit" // the model API kept answering 429
	CodeMaxTurns        Code = "max_turns_exceeded"  // the agent called tools max_turns times without answering
	CodeCancelled       Code = "cancelled"           // the run was cancelled
	CodeInterrupted     Code = "interrupted"         // the server stopped before the run ended
	// Per-user limits (config limits.*): 429 with Retry-After.
	CodeUserRateLimited Code = "rate_limited"    // limits.requests_per_minute
	CodeTooManyRuns     Code = "too_many_runs"   // limits.concurrent_runs
	CodeTooManyQueued   Code = "too_many_queued" // limits.queued_runs
	CodeBudgetExceeded  Code = "budget_exceeded" // limits.daily_tokens; also a run stopped by it
)

// Error is a domain error: a code, a message safe to show a client, and
// optionally the cause (never shown to clients).
type Error struct {
	Code    Code
	Message string
	Err     error
	// RetryAfter, when positive, is when the client may try again; the
	// HTTP layer sends it as Retry-After (whole seconds, at least 1).
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	switch {
	case e.Message == "" && e.Err == nil:
		return string(e.Code)
	case e.Err == nil:
		return e.Message
	case e.Message == "":
		return fmt.Sprintf("%s: %v", e.Code, e.Err)
	}
	return fmt.Sprintf("%s: %v", e.Message, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrNotFound) true for any *Error with that code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code && t.Message == "" && t.Err == nil
}

// Info returns the error as stored on a run and streamed to clients.
func (e *Error) Info() *ErrorInfo {
	msg := e.Message
	if msg == "" {
		msg = string(e.Code)
	}
	return &ErrorInfo{Code: e.Code, Message: msg}
}

// Errorf returns an *Error with a formatted client-safe message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Wrap returns an *Error with a client-safe message and an internal cause.
func Wrap(code Code, err error, message string) *Error {
	return &Error{Code: code, Message: message, Err: err}
}

// Sentinels for errors.Is. Drivers return *Error values with these codes.
var (
	ErrNotFound    = &Error{Code: CodeNotFound}
	ErrConflict    = &Error{Code: CodeConflict}
	ErrInvalid     = &Error{Code: CodeInvalidRequest}
	ErrOverloaded  = &Error{Code: CodeOverloaded}
	ErrUnavailable = &Error{Code: CodeUnavailable}
	ErrGone        = &Error{Code: CodeGone}
	// A store's CreateRunLimited refuses with these when a limit is reached.
	ErrTooManyRuns   = &Error{Code: CodeTooManyRuns}
	ErrTooManyQueued = &Error{Code: CodeTooManyQueued}
)

// CodeOf returns the code of err's *Error, or CodeInternal.
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

// AsError returns err as an *Error, wrapping anything else as internal with
// a message that reveals nothing.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Code: CodeInternal, Message: "internal error", Err: err}
}
