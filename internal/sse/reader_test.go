package sse

import (
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

func readAll(t testing.TB, s string) ([]Event, *Reader, error) {
	t.Helper()
	r := NewReader(strings.NewReader(s))
	var evs []Event
	for {
		ev, err := r.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = nil
			}
			return evs, r, err
		}
		evs = append(evs, ev)
	}
}

func TestReader(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    []Event
		wantErr error
	}{
		{"native event", "id: 1\nevent: run.created\ndata: {\"a\":1}\n\n",
			[]Event{{ID: "1", Type: "run.created", Data: `{"a":1}`}}, nil},
		{"default type", "data: hi\n\n", []Event{{Type: "message", Data: "hi"}}, nil},
		{"multi-line data", "data: a\ndata:b\ndata:  c\n\n", []Event{{Type: "message", Data: "a\nb\n c"}}, nil},
		{"comments and heartbeats", ": ok\n\n: heartbeat\ndata: x\n\n", []Event{{Type: "message", Data: "x"}}, nil},
		{"CRLF and CR", "data: a\r\n\r\ndata: b\r\rdata: c\n\n", []Event{{Type: "message", Data: "a"}, {Type: "message", Data: "b"}, {Type: "message", Data: "c"}}, nil},
		{"id persists", "id: 7\ndata: a\n\ndata: b\n\n", []Event{{ID: "7", Type: "message", Data: "a"}, {ID: "7", Type: "message", Data: "b"}}, nil},
		{"no data, no dispatch", "event: ping\n\ndata: x\n\n", []Event{{Type: "message", Data: "x"}}, nil},
		{"field without colon", "data\n\n", []Event{{Type: "message", Data: ""}}, nil},
		{"unknown field ignored", "foo: bar\ndata: x\n\n", []Event{{Type: "message", Data: "x"}}, nil},
		{"BOM", "\xEF\xBB\xBFdata: x\n\n", []Event{{Type: "message", Data: "x"}}, nil},
		{"unterminated event dropped", "data: x\n\ndata: y\n", []Event{{Type: "message", Data: "x"}}, nil},
		{"cut mid-line", "data: x\n\ndata: y", []Event{{Type: "message", Data: "x"}}, io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _, err := readAll(t, tt.in)
			if !errors.Is(err, tt.wantErr) && !(err == nil && tt.wantErr == nil) {
				t.Fatalf("error %v, want %v", err, tt.wantErr)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestRetryAndComments(t *testing.T) {
	t.Parallel()
	_, r, err := readAll(t, "retry: 1500\n: a\n: b\nretry: x1\ndata: d\n\n")
	if err != nil || r.Retry != 1500 || r.Comments != 2 {
		t.Fatalf("retry %d comments %d err %v", r.Retry, r.Comments, err)
	}
}

func FuzzReader(f *testing.F) {
	for _, s := range []string{"id: 1\nevent: a\ndata: b\n\n", "data: x\r\n\r\n", ": c\n", "\xEF\xBB\xBFdata", "retry: 10\n\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		evs, _, _ := readAll(t, s)
		for _, ev := range evs {
			if ev.Type == "" {
				t.Fatalf("event without a type: %+v", ev)
			}
			if strings.ContainsAny(ev.Type, "\r\n") || strings.ContainsAny(ev.ID, "\r\n") {
				t.Fatalf("line break in a single-line field: %+v", ev)
			}
		}
	})
}
