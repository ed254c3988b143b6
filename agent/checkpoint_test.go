package agent

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/agentstream/agentstream"
)

// TestIntervalCheckpoint: while an answer streams, what has arrived is
// saved as a partial message every CheckpointInterval (here: every delta),
// and the final save replaces it with the whole answer.
func TestIntervalCheckpoint(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	h := newHarness(t, setup{
		cfg:    Config{CheckpointInterval: 1},
		script: scripted(turn{text: []string{"one ", "two ", "three"}, wait: release}),
	})
	th := h.thread(nil)
	run := h.start(th, "go")
	eventually(t, "the streaming answer is checkpointed", func() bool {
		msgs := h.messages(th.ID)
		return len(msgs) == 2 && msgs[1].Status == agentstream.MessagePartial && msgs[1].Content == "one two three"
	})
	if got := h.stored(run.ID).Status; got != agentstream.RunRunning {
		t.Fatalf("run %s while its answer streams", got)
	}
	close(release)
	h.waitEvents(run.ID, "the terminal event", func(evs []agentstream.Event) bool {
		return len(evs) > 0 && evs[len(evs)-1].Type.Terminal()
	})
	msgs := h.messages(th.ID)
	if len(msgs) != 2 || msgs[1].Status != agentstream.MessageComplete || msgs[1].Content != "one two three" {
		t.Fatalf("after the run: %+v", msgs)
	}
}

// slowCheckpoints is a store whose CheckpointRun waits for release.
type slowCheckpoints struct {
	agentstream.Store
	release chan struct{}
	calls   atomic.Int32
}

func (s *slowCheckpoints) CheckpointRun(ctx context.Context, runID string, msgs []agentstream.Message) error {
	s.calls.Add(1)
	<-s.release
	return s.Store.CheckpointRun(ctx, runID, msgs)
}

func (s *slowCheckpoints) CheckpointText(ctx context.Context, runID string, m agentstream.Message, at int64) error {
	s.calls.Add(1)
	<-s.release
	return s.Store.CheckpointText(ctx, runID, m, at)
}

// TestCheckpointOffTheTokenPath: a store slow to save a checkpoint does not
// hold up the tokens behind it, and the newest text is saved once it can be.
func TestCheckpointOffTheTokenPath(t *testing.T) {
	t.Parallel()
	slow := &slowCheckpoints{release: make(chan struct{})}
	h := newHarness(t, setup{
		cfg:    Config{CheckpointInterval: 1},
		script: scripted(turn{text: []string{"a ", "b ", "c ", "d"}, hold: true}),
		wrap:   func(s agentstream.Store) agentstream.Store { slow.Store = s; return slow },
	})
	th := h.thread(nil)
	run := h.start(th, "go")
	// Every delta reaches the log while the first save is stuck.
	h.waitEvents(run.ID, "four deltas", func(evs []agentstream.Event) bool {
		return count(evs, agentstream.EventMessageDelta) == 4
	})
	eventually(t, "the first save to start", func() bool { return slow.calls.Load() >= 1 })
	n := slow.calls.Load()
	close(slow.release)
	if n != 1 {
		t.Fatalf("%d saves started while the first one was stuck, want 1", n)
	}
	eventually(t, "the newest text to be saved", func() bool {
		msgs := h.messages(th.ID)
		return len(msgs) == 2 && msgs[1].Content == "a b c d"
	})
	h.r.Cancel(run.ID)
	end(t, h.events(run.ID), agentstream.EventRunCancelled)
}

// textCall is one CheckpointText a store was given.
type textCall struct {
	id, text string
	at       int64
}

// textRecorder records CheckpointText calls once they are done, and fails
// those fail says (by number, from 1).
type textRecorder struct {
	agentstream.Store
	fail  func(call int) bool
	mu    sync.Mutex
	n     int
	calls []textCall
}

func (s *textRecorder) CheckpointText(ctx context.Context, runID string, m agentstream.Message, at int64) error {
	s.mu.Lock()
	s.n++
	fail := s.fail != nil && s.fail(s.n)
	s.mu.Unlock()
	var err error
	switch {
	case fail:
		err = errors.New("the store is down")
	case s.Store != nil:
		err = s.Store.CheckpointText(ctx, runID, m, at)
	}
	s.mu.Lock()
	s.calls = append(s.calls, textCall{m.ID, m.Content, at})
	s.mu.Unlock()
	return err
}

func (s *textRecorder) recorded() []textCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]textCall(nil), s.calls...)
}

// TestPartialTextIncrements: given the text since its previous call, each
// save passes only the text since the last save that succeeded, from where the stored text ends; a failed
// save's increment goes with the next; a character split between pieces,
// and invalid bytes the next piece may extend, wait for the next save;
// the increments, made storable one by one, add up to the text made
// storable whole.
func TestPartialTextIncrements(t *testing.T) {
	st := &textRecorder{fail: func(call int) bool { return call == 3 }}
	var p partialText
	msg := agentstream.Message{ID: "msg_1", Role: agentstream.RoleAssistant, Status: agentstream.MessagePartial}
	saves := []struct {
		sofar   string
		wantErr bool
	}{
		{sofar: "Grüße"},
		{sofar: "Grüße, 日本"},
		{sofar: "Grüße, 日本語", wantErr: true}, // the third call fails
		{sofar: "Grüße, 日本語 ok"},
		{sofar: "Grüße, 日本語 ok \xe6\x97"}, // half of 日
		{sofar: "Grüße, 日本語 ok 日 x\xff"},
		{sofar: "Grüße, 日本語 ok 日 x\xff\x00y"},
		{sofar: "Grüße, 日本語 ok 日 x\xff\x00y"}, // nothing new
	}
	prev := ""
	for i, s := range saves {
		// Each call is given what came since the previous one.
		m := msg
		m.Content = strings.TrimPrefix(s.sofar, prev)
		prev = s.sofar
		err := p.save(t.Context(), st, "run_1", m)
		if (err != nil) != s.wantErr {
			t.Fatalf("save %d: error %v", i, err)
		}
	}
	// The texts each call is given; the third fails, so the fourth is
	// made from where the second ended.
	want := []string{"Grüße", ", 日本", "語", "語 ok", " ", "日 x", "\uFFFD\uFFFDy"}
	got := st.recorded()
	if len(got) != len(want) {
		t.Fatalf("calls %+v, want the texts %q", got, want)
	}
	var stored strings.Builder
	for i, w := range want {
		if g := got[i]; g.id != "msg_1" || g.text != w || g.at != int64(stored.Len()) {
			t.Errorf("call %d: %+v, want %q at %d", i, g, w, stored.Len())
		}
		if i != 2 {
			stored.WriteString(got[i].text)
		}
	}
	if whole := agentstream.StorableText(saves[len(saves)-1].sofar); stored.String() != whole {
		t.Errorf("the increments add up to %q, want %q", stored.String(), whole)
	}
}

// TestCheckpointTextAfterFailure: when the save of a partial answer's
// increment fails, the next save carries it, from the same place, and the
// store holds the whole text; the end replaces it.
func TestCheckpointTextAfterFailure(t *testing.T) {
	t.Parallel()
	rec := &textRecorder{fail: func(call int) bool { return call == 2 }}
	model := &pacedModel{pieces: make(chan string)}
	h := newHarness(t, setup{
		cfg:   Config{CheckpointInterval: 1},
		model: model,
		wrap:  func(s agentstream.Store) agentstream.Store { rec.Store = s; return rec },
	})
	th := h.thread(nil)
	run := h.start(th, "go")
	for i, piece := range []string{"un ", "deux ", "trois"} {
		model.pieces <- piece
		eventually(t, "a save of the piece", func() bool { return len(rec.recorded()) == i+1 })
	}
	want := []textCall{{text: "un ", at: 0}, {text: "deux ", at: 3}, {text: "deux trois", at: 3}}
	for i, c := range rec.recorded() {
		if c.text != want[i].text || c.at != want[i].at {
			t.Errorf("call %d: %+v, want %q at %d", i, c, want[i].text, want[i].at)
		}
	}
	msgs := h.messages(th.ID)
	if len(msgs) != 2 || msgs[1].Content != "un deux trois" || msgs[1].Status != agentstream.MessagePartial {
		t.Fatalf("while streaming: %+v", msgs)
	}
	close(model.pieces)
	end(t, h.events(run.ID), agentstream.EventRunCompleted)
	msgs = h.messages(th.ID)
	if len(msgs) != 2 || msgs[1].Content != "un deux trois" || msgs[1].Status != agentstream.MessageComplete {
		t.Fatalf("after the run: %+v", msgs)
	}
}

// pacedModel streams the pieces the test sends it, one at a time, and
// answers when the channel is closed.
type pacedModel struct{ pieces chan string }

func (m *pacedModel) Stream(ctx context.Context, _ agentstream.ModelRequest, onDelta func(agentstream.ModelDelta)) (agentstream.ModelResult, error) {
	var res agentstream.ModelResult
	for {
		select {
		case s, ok := <-m.pieces:
			if !ok {
				res.FinishReason = "stop"
				return res, nil
			}
			onDelta(agentstream.ModelDelta{Text: s})
			res.Content += s
		case <-ctx.Done():
			return res, ctx.Err()
		}
	}
}
