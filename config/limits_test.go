package config

import (
	"errors"
	"strings"
	"testing"
)

// TestLimits: the limits section is read as written, off by default, with
// burst defaulting to the rate.
func TestLimits(t *testing.T) {
	t.Parallel()
	c, err := Load("c.yaml", []byte(`limits:
  requests_per_minute: 60
  concurrent_runs: 3
  queued_runs: 2
  daily_tokens: 100000
`))
	if err != nil {
		t.Fatal(err)
	}
	got := c.WithDefaults().Limits
	want := Limits{RequestsPerMinute: 60, Burst: 60, ConcurrentRuns: 3, QueuedRuns: 2, DailyTokens: 100000}
	if got != want {
		t.Fatalf("limits %+v, want %+v", got, want)
	}
	c, err = Load("c.yaml", []byte("limits:\n  requests_per_minute: 60\n  burst: 5\n"))
	if err != nil {
		t.Fatal(err)
	}
	if b := c.WithDefaults().Limits.Burst; b != 5 {
		t.Fatalf("burst %d, want 5 as written", b)
	}
	if got := (Config{}).WithDefaults().Limits; got != (Limits{}) {
		t.Fatalf("default limits %+v, want all off", got)
	}
}

// TestLimitsProblems: a negative limit, or a burst without a rate, is a
// problem at its line.
func TestLimitsProblems(t *testing.T) {
	t.Parallel()
	_, err := Load("c.yaml", []byte(`limits:
  requests_per_minute: -1
  burst: -2
  concurrent_runs: -3
  queued_runs: -4
  daily_tokens: -5
`))
	tests := []struct {
		line int
		path string
		text string
	}{
		{2, "limits.requests_per_minute", "-1 must not be negative (0 means no limit)"},
		{3, "limits.burst", "-2 must not be negative"},
		{4, "limits.concurrent_runs", "-3 must not be negative"},
		{5, "limits.queued_runs", "-4 must not be negative"},
		{6, "limits.daily_tokens", "-5 must not be negative"},
	}
	var ps Problems
	if !errors.As(err, &ps) || len(ps) != len(tests) {
		t.Fatalf("error:\n%v\nwant %d problems", err, len(tests))
	}
	for i, w := range tests {
		if p := ps[i]; p.Line != w.line || p.Path != w.path || !strings.Contains(p.Message, w.text) {
			t.Errorf("problem %d: %+v, want line %d, %s: %s", i, p, w.line, w.path, w.text)
		}
	}
	_, err = Load("c.yaml", []byte("limits:\n  burst: 5\n"))
	if !errors.As(err, &ps) || len(ps) != 1 || ps[0].Line != 2 || !strings.Contains(ps[0].Message, "5 without limits.requests_per_minute") {
		t.Fatalf("a burst without a rate: %v", err)
	}
	_, err = Load("c.yaml", []byte("limits:\n  daily_tokens: lots\n"))
	if !errors.As(err, &ps) || len(ps) != 1 || ps[0].Line != 2 || ps[0].Path != "limits.daily_tokens" {
		t.Fatalf("a word for a number: %v", err)
	}
}
