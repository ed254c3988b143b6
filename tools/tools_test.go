package tools

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

var fixed = func() time.Time { return time.Date(2026, 11, 28, 15, 4, 5, 0, time.UTC) }

func TestDueDate(t *testing.T) {
	t.Parallel()
	tool := DueDate(fixed)
	tests := []struct {
		name, args string
		want       map[string]any
		wantErr    string
	}{
		{name: "12 weeks 6 days", args: `{"last_period":"2026-08-30"}`,
			want: map[string]any{"due_date": "2027-06-06", "current_week": 13.0, "gestational_age": "12 weeks 6 days", "days_until_due": 190.0, "trimester": 1.0}},
		{name: "today", args: `{"last_period":"2026-11-28"}`,
			want: map[string]any{"due_date": "2027-09-04", "current_week": 1.0, "gestational_age": "0 weeks 0 days"}},
		{name: "third trimester", args: `{"last_period":"2026-04-01"}`,
			want: map[string]any{"trimester": 3.0, "current_week": 35.0}},
		{name: "future", args: `{"last_period":"2026-12-01"}`, wantErr: "in the future"},
		{name: "too long ago", args: `{"last_period":"2025-01-01"}`, wantErr: "more than 44 weeks"},
		{name: "not a date", args: `{"last_period":"June 1st"}`, wantErr: "YYYY-MM-DD"},
		{name: "missing", args: `{}`, wantErr: "required"},
		{name: "unknown field", args: `{"lmp":"2026-08-30"}`, wantErr: "invalid arguments"},
		{name: "not an object", args: `[1]`, wantErr: "invalid arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := tool.Call(context.Background(), json.RawMessage(tt.args))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got map[string]any
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Fatalf("output %q is not JSON: %v", out, err)
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("%s = %v, want %v (output %s)", k, got[k], v, out)
				}
			}
		})
	}
}

func TestCurrentTime(t *testing.T) {
	t.Parallel()
	tool := CurrentTime(fixed)
	tests := []struct{ args, want, wantErr string }{
		{args: ``, want: `"time":"2026-11-28T15:04:05Z"`},
		{args: `{}`, want: `"weekday":"Saturday"`},
		{args: `{"timezone":"Asia/Seoul"}`, want: `"time":"2026-11-29T00:04:05+09:00"`},
		{args: `{"timezone":"Mars/Base"}`, wantErr: "unknown time zone"},
		{args: `{"tz":"UTC"}`, wantErr: "invalid arguments"},
	}
	for _, tt := range tests {
		out, err := tool.Call(context.Background(), json.RawMessage(tt.args))
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("args %s: error %v, want %q", tt.args, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !strings.Contains(out, tt.want) {
			t.Errorf("args %s: %s, %v; want it to contain %s", tt.args, out, err, tt.want)
		}
	}
}

func TestRegistry(t *testing.T) {
	t.Parallel()
	r := Builtins(fixed)
	if got := strings.Join(r.Names(), ","); got != "current_time,due_date" {
		t.Fatalf("names %s", got)
	}
	if err := r.Add(CurrentTime(fixed)); err == nil {
		t.Fatal("adding a tool twice succeeded")
	}
	for _, name := range r.Names() {
		var schema map[string]any
		if err := json.Unmarshal(r[name].Spec().Parameters, &schema); err != nil || schema["type"] != "object" {
			t.Errorf("%s: parameters are not a JSON Schema object: %v", name, err)
		}
	}
}
