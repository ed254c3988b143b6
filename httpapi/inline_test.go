package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/agent"
	"github.com/agentstream/agentstream/httpapi/wire"
	"github.com/agentstream/agentstream/internal/sse"
	"github.com/agentstream/agentstream/memlog"
)

// gateModel answers "a", then waits for release before "b".
type gateModel struct {
	streamed chan struct{} // closed once "a" was handed on
	release  chan struct{}
	// inline is set when the model was called on the goroutine of the
	// request that started the run.
	inline *atomic.Bool
}

func (m gateModel) Stream(ctx context.Context, _ agentstream.ModelRequest, onDelta func(agentstream.ModelDelta)) (agentstream.ModelResult, error) {
	m.inline.Store(strings.Contains(string(debug.Stack()), "httpapi.(*Server).runInline"))
	onDelta(agentstream.ModelDelta{Text: "a"})
	close(m.streamed)
	select {
	case <-m.release:
	case <-ctx.Done():
		return agentstream.ModelResult{Content: "a"}, ctx.Err()
	}
	onDelta(agentstream.ModelDelta{Text: "b"})
	return agentstream.ModelResult{Content: "ab", FinishReason: "stop"}, nil
}

// inlineRun starts a run of a gateModel through POST /v1/threads/{id}/runs
// on a server whose runs execute inline, once the model answered "a",
// and returns the run's id, the model, the log, and the stream's events
// once it ends.
func inlineRun(t *testing.T, opts Options) (runID string, model gateModel, log *memlog.Log, out <-chan []sse.Event) {
	t.Helper()
	model = gateModel{streamed: make(chan struct{}), release: make(chan struct{}), inline: new(atomic.Bool)}
	f := newFixtureWith(t, opts, nil, model)
	log = f.log
	resp, err := http.Post(f.url+"/v1/threads", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	var th struct{ ID string }
	if err := json.NewDecoder(resp.Body).Decode(&th); err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	resp, err = http.Post(f.url+"/v1/threads/"+th.ID+"/runs", "application/json", strings.NewReader(`{"input":"hi"}`))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = resp.Body.Close() })
	evc := make(chan []sse.Event, 1)
	go func() {
		var evs []sse.Event
		r := sse.NewReader(resp.Body)
		for {
			ev, err := r.Next()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					t.Errorf("reading the stream: %v", err)
				}
				evc <- evs
				return
			}
			evs = append(evs, ev)
		}
	}()
	select {
	case <-model.streamed:
	case <-time.After(10 * time.Second):
		t.Fatal("the model was not called")
	}
	if !model.inline.Load() {
		t.Fatal("the run does not execute on the goroutine of the request that started it")
	}
	return resp.Header.Get("X-Run-Id"), model, log, evc
}

func receiveStream(t *testing.T, out <-chan []sse.Event) []sse.Event {
	t.Helper()
	select {
	case evs := <-out:
		return evs
	case <-time.After(10 * time.Second):
		t.Fatal("the stream did not end")
		return nil
	}
}

// TestInlineCatchesUp: an event another appended to the log of a run that
// executes inline reaches the run's client in its place, and so does the
// run.created its start appended: the stream is the log, id for id.
func TestInlineCatchesUp(t *testing.T) {
	t.Parallel()
	runID, model, log, out := inlineRun(t, Options{Heartbeat: time.Second})
	if _, err := log.Append(t.Context(), runID, agentstream.NewDeltaEvent("msg_other", "X")); err != nil {
		t.Fatal(err)
	}
	close(model.release)
	evs := receiveStream(t, out)
	logged, _, err := log.Read(t.Context(), runID, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != len(logged) {
		t.Fatalf("stream has %d events, the log %d: %+v", len(evs), len(logged), evs)
	}
	for i, ev := range evs {
		if ev.ID != strconv.FormatInt(logged[i].Seq, 10) || ev.Type != string(logged[i].Type) || ev.Data != string(logged[i].Data) {
			t.Fatalf("event %d is %s %s %s; the log's is %d %s %s", i, ev.ID, ev.Type, ev.Data, logged[i].Seq, logged[i].Type, logged[i].Data)
		}
	}
	if evs[len(evs)-1].Type != string(agentstream.EventRunCompleted) {
		t.Fatalf("stream ends with %s", evs[len(evs)-1].Type)
	}
}

// TestInlineEndedElsewhere: when another ends a run that executes inline
// (its terminal event appended to the log, as the sweep of an instance
// that found its lease run out does), the run's client gets that end from
// the log once the run returns.
func TestInlineEndedElsewhere(t *testing.T) {
	t.Parallel()
	t.Run("at once", func(t *testing.T) {
		t.Parallel()
		runID, model, log, out := inlineRun(t, Options{Heartbeat: time.Second})
		endedElsewhere(t, runID, model, log, out, 0)
	})
	t.Run("after the inline write bound", func(t *testing.T) {
		t.Parallel()
		// The run returns after its last write's deadline (5 s) passed:
		// the end read from the log must get a deadline of its own. No
		// heartbeat meanwhile (it would move the deadline).
		runID, model, log, out := inlineRun(t, Options{Heartbeat: time.Hour, StallTimeout: time.Hour})
		endedElsewhere(t, runID, model, log, out, inlineStall+500*time.Millisecond)
	})
}

// endedElsewhere appends a run.interrupted to the run's log, lets the
// model go on after wait, and checks that the stream ends with it.
func endedElsewhere(t *testing.T, runID string, model gateModel, log *memlog.Log, out <-chan []sse.Event, wait time.Duration) {
	t.Helper()
	seq, err := log.Append(t.Context(), runID, agentstream.NewEvent(agentstream.EventRunInterrupted, agentstream.RunEndData{
		RunID: runID, Status: agentstream.RunInterrupted,
		Error: &agentstream.ErrorInfo{Code: agentstream.CodeInterrupted, Message: "its lease ran out"},
	}))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(wait)
	close(model.release)
	evs := receiveStream(t, out)
	if len(evs) == 0 {
		t.Fatal("empty stream")
	}
	last := evs[len(evs)-1]
	if last.Type != string(agentstream.EventRunInterrupted) || last.ID != strconv.FormatInt(seq, 10) {
		t.Fatalf("stream ends with %s (id %s), want the run.interrupted at %d: %+v", last.Type, last.ID, seq, evs)
	}
}

// panicky is the native encoder, but for message.delta, which panics.
type panicky struct{ wire.Encoder }

func (p panicky) Encode(buf []byte, ev agentstream.Event) []byte {
	if ev.Type == agentstream.EventMessageDelta {
		panic("an encoder's bug")
	}
	return p.Encoder.Encode(buf, ev)
}

// TestInlineEncoderPanics: an encoder that panics while a run executing
// inline writes to its client drops that client; the run goes on and
// ends, and the process with it does not.
func TestInlineEncoderPanics(t *testing.T) {
	t.Parallel()
	model := gateModel{streamed: make(chan struct{}), release: make(chan struct{}), inline: new(atomic.Bool)}
	close(model.release)
	f := newFixtureWith(t, Options{}, nil, model)
	now := time.Now().UTC()
	th := agentstream.Thread{ID: agentstream.NewID("thr_"), UserID: LocalUser, CreatedAt: now, UpdatedAt: now}
	if err := f.store.CreateThread(t.Context(), th); err != nil {
		t.Fatal(err)
	}
	in := new(agent.Inline)
	run, err := f.srv.runner.Start(t.Context(), agent.StartRequest{Thread: th, UserID: LocalUser, Input: "hi", Inline: in})
	if err != nil {
		t.Fatal(err)
	}
	if !in.Ready() {
		t.Fatal("the run is not ready to run inline")
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/v1/threads/"+th.ID+"/runs", nil)
	f.srv.runInline(rec, req, &follow{run: &run, enc: func(st wire.Stream) wire.Encoder { return panicky{wire.NewNative(st)} }, inline: in})
	if !model.inline.Load() {
		t.Fatal("the run did not execute on the caller's goroutine")
	}
	if strings.Contains(rec.Body.String(), "run.completed") {
		t.Fatalf("the client was not dropped: %q", rec.Body.String())
	}
	stored, err := f.store.GetRun(t.Context(), LocalUser, run.ID)
	if err != nil || stored.Status != agentstream.RunCompleted {
		t.Fatalf("the run ended %+v, %v; want completed", stored, err)
	}
}
