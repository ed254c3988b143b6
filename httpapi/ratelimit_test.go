package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/internal/testenv"
)

// fakeLimiter answers every Allow with its fields, counting the calls.
type fakeLimiter struct {
	ok    bool
	wait  time.Duration
	err   error
	calls chan string
}

func (l *fakeLimiter) Allow(_ context.Context, key string) (bool, time.Duration, error) {
	l.calls <- key
	return l.ok, l.wait, l.err
}

// TestRateLimitAnswer: a refused request is a 429 rate_limited whose
// Retry-After is the limiter's wait in whole seconds, rounded up; the key
// is the authenticated user.
func TestRateLimitAnswer(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		wait  time.Duration
		after string
	}{{1500 * time.Millisecond, "2"}, {10 * time.Millisecond, "1"}, {30 * time.Second, "30"}} {
		l := &fakeLimiter{wait: tc.wait, calls: make(chan string, 1)}
		f := newFixture(t, Options{RateLimiter: l, RequestsPerMinute: 7})
		resp, err := http.Get(f.url + "/v1/agents")
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != tc.after {
			t.Fatalf("wait %v: status %d Retry-After %q, want 429 and %s", tc.wait, resp.StatusCode, resp.Header.Get("Retry-After"), tc.after)
		}
		if key := <-l.calls; key != LocalUser {
			t.Fatalf("limited key %q, want the user %q", key, LocalUser)
		}
	}
	// The message names the setting and the wait.
	e := (&Server{opts: Options{RateLimiter: &fakeLimiter{wait: 2500 * time.Millisecond, calls: make(chan string, 1)}, RequestsPerMinute: 7}}).
		limitRate(httptestRequest(t), "ada")
	if e == nil || e.Error() != "limits.requests_per_minute (7) reached for this user; retry in 3s" || HTTPStatus(e) != http.StatusTooManyRequests {
		t.Fatalf("refusal %v", e)
	}
}

// TestRateLimitFailsOpen: a limiter that fails (Redis down) lets requests
// through, with a warning in the log, once a minute, not per request.
func TestRateLimitFailsOpen(t *testing.T) {
	t.Parallel()
	var logs testenv.Buffer
	l := &fakeLimiter{err: errors.New("redis: connection refused"), calls: make(chan string, 1)}
	f := newFixture(t, Options{RateLimiter: l, RequestsPerMinute: 1, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	for range 3 {
		resp, err := http.Get(f.url + "/v1/agents")
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d with the limiter down, want 200", resp.StatusCode)
		}
		<-l.calls
	}
	const warning = "the rate limiter failed; requests go through unlimited until it is back"
	if got := logs.String(); strings.Count(got, warning) != 1 || !strings.Contains(got, "connection refused") {
		t.Fatalf("logs %q, want the warning once", got)
	}
}

func httptestRequest(t *testing.T) *http.Request {
	t.Helper()
	r, err := http.NewRequestWithContext(t.Context(), "GET", "/v1/agents", nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestLimitStatuses: the limits' codes are 429s, and an error's
// RetryAfter is sent, rounded up to a whole second, at least 1.
func TestLimitStatuses(t *testing.T) {
	t.Parallel()
	for _, c := range []agentstream.Code{agentstream.CodeUserRateLimited, agentstream.CodeTooManyRuns, agentstream.CodeTooManyQueued, agentstream.CodeBudgetExceeded} {
		if s := HTTPStatus(&agentstream.Error{Code: c}); s != http.StatusTooManyRequests {
			t.Errorf("%s: status %d, want 429", c, s)
		}
	}
	for d, want := range map[time.Duration]string{time.Millisecond: "1", time.Second: "1", 1001 * time.Millisecond: "2", 3 * time.Hour: "10800"} {
		if got := retryAfter(d); got != want {
			t.Errorf("retryAfter(%v) = %s, want %s", d, got, want)
		}
	}
}
