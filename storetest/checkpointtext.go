package storetest

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/agentstream/agentstream"
)

// pieces is an answer as a runner checkpoints it, in pieces of whole
// strings, with characters of two, three and four bytes.
var pieces = []string{"Grüße, ", "日本語の", "答え 🌍", "", " and ", "ça ", "va? ✓"}

// appendPieces checkpoints msg's text as pieces, the first at byte from,
// each with CheckpointText at the end of the text before it, and returns
// the text appended.
func appendPieces(t testing.TB, st agentstream.Store, run agentstream.Run, msg agentstream.Message, from int64, pieces []string) string {
	t.Helper()
	var text strings.Builder
	for _, p := range pieces {
		m := msg
		m.Content = p
		at := from + int64(text.Len())
		if err := st.CheckpointText(t.Context(), run.ID, m, at); err != nil {
			t.Fatalf("CheckpointText at %d: %v", at, err)
		}
		text.WriteString(p)
	}
	return text.String()
}

// testCheckpointTextAppends: the text saved piece by piece reads back
// whole and exact, in both listings, with the message's other fields as
// the first save left them.
func (s suite) testCheckpointTextAppends(t *testing.T) {
	st := s.open(t)
	th := createThread(t, st, "user-1")
	run, in := runningRun(t, st, th, at(10))
	msg := withSeq(assistant(run, "", agentstream.MessagePartial, at(11)), 2)
	text := appendPieces(t, st, run, msg, 0, pieces)
	want := msg
	want.Content = text
	checkMessages(t, st, th.ID, in, want)
	page, err := st.ListMessagesAfter(t.Context(), th.ID, 1, 5)
	if err != nil || len(page) != 1 {
		t.Fatalf("ListMessagesAfter: %v, %v", page, err)
	}
	checkMessage(t, page[0], want)
	// A message saved whole (a tool boundary) and appended to afterwards.
	call := agentstream.ToolCall{ID: "call_1", Name: "echo", Arguments: "{}"}
	whole := withSeq(assistant(run, "Ünïcode ", agentstream.MessagePartial, at(12), call), 3)
	if err := st.CheckpointRun(t.Context(), run.ID, []agentstream.Message{whole}); err != nil {
		t.Fatalf("CheckpointRun: %v", err)
	}
	wantWhole := whole
	wantWhole.Content += appendPieces(t, st, run, whole, int64(len(whole.Content)), []string{"→ more", " wörds"})
	if wantWhole.Content != "Ünïcode → more wörds" {
		t.Fatalf("appended %q", wantWhole.Content)
	}
	checkMessages(t, st, th.ID, in, want, wantWhole)
}

// testCheckpointTextReplaced: a whole save (CheckpointRun at a tool
// boundary, FinishRun at the end, CheckpointText at 0) replaces the text
// appended, so that nothing appended before shows after it.
func (s suite) testCheckpointTextReplaced(t *testing.T) {
	st := s.open(t)
	th := createThread(t, st, "user-1")
	run, in := runningRun(t, st, th, at(10))
	first := withSeq(assistant(run, "", agentstream.MessagePartial, at(11)), 2)
	text := appendPieces(t, st, run, first, 0, pieces)
	first.Content, first.Status = text, agentstream.MessageComplete
	if err := st.CheckpointRun(t.Context(), run.ID, []agentstream.Message{first}); err != nil {
		t.Fatalf("CheckpointRun: %v", err)
	}
	checkMessages(t, st, th.ID, in, first)

	second := withSeq(assistant(run, "", agentstream.MessagePartial, at(12)), 3)
	appendPieces(t, st, run, second, 0, pieces[:3])
	// At 0 the text starts again.
	second.Content = "again"
	if err := st.CheckpointText(t.Context(), run.ID, second, 0); err != nil {
		t.Fatalf("CheckpointText at 0: %v", err)
	}
	checkMessages(t, st, th.ID, in, first, second)
	second.Content += appendPieces(t, st, run, second, int64(len(second.Content)), []string{" and again"})
	checkMessages(t, st, th.ID, in, first, second)

	// The end's text is not the text appended: it replaces it.
	second.Content, second.Status = "the answer, in the end", agentstream.MessageComplete
	done := finished(run, agentstream.RunCompleted, nil, agentstream.Usage{}, at(13))
	if err := st.FinishRun(t.Context(), done, []agentstream.Message{second}); err != nil {
		t.Fatalf("FinishRun: %v", err)
	}
	checkMessages(t, st, th.ID, in, first, second)
	// The thread goes away with its messages and what was appended.
	if err := st.DeleteThread(t.Context(), th.UserID, th.ID); err != nil {
		t.Fatalf("DeleteThread: %v", err)
	}
	checkMessages(t, st, th.ID)
}

// testCheckpointTextInterrupted: a run ended as interrupted (at a start,
// or by its lease) keeps the partial text appended, and takes no more.
func (s suite) testCheckpointTextInterrupted(t *testing.T) {
	for _, expired := range []bool{false, true} {
		st := s.open(t)
		th := createThread(t, st, "user-1")
		run, in := ownedRun(t, st, th, at(1), "inst-dead", at(10))
		run = startRun(t, st, run, at(2))
		msg := withSeq(assistant(run, "", agentstream.MessagePartial, at(3)), 2)
		text := appendPieces(t, st, run, msg, 0, pieces)
		var err error
		if expired {
			_, err = st.InterruptExpiredRuns(t.Context(), at(20), interrupted)
		} else {
			_, err = st.InterruptRuns(t.Context(), at(20), interrupted)
		}
		if err != nil {
			t.Fatalf("interrupting (expired %v): %v", expired, err)
		}
		msg.Content = text
		checkMessages(t, st, th.ID, in, msg)
		late := msg
		late.Content = "late"
		err = st.CheckpointText(t.Context(), run.ID, late, int64(len(text)))
		wantErr(t, err, agentstream.ErrConflict, "CheckpointText of an interrupted run")
		checkMessages(t, st, th.ID, in, msg)
		// The thread's next run sees the text as it was.
		_, nextIn := runningRun(t, st, th, at(30))
		checkMessages(t, st, th.ID, in, msg, nextIn)
	}
}

// testCheckpointTextRefused: what CheckpointText refuses, and that it
// writes nothing then.
func (s suite) testCheckpointTextRefused(t *testing.T) {
	st := s.open(t)
	th := createThread(t, st, "user-1")
	run, in := runningRun(t, st, th, at(10))
	msg := withSeq(assistant(run, "", agentstream.MessagePartial, at(11)), 2)
	text := appendPieces(t, st, run, msg, 0, pieces[:2])
	msg.Content = text
	piece := func(s string) agentstream.Message { m := msg; m.Content = s; return m }
	n := int64(len(text))
	ctx := t.Context()

	wantErr(t, st.CheckpointText(ctx, "run_missing", piece("x"), n), agentstream.ErrNotFound, "unknown run")
	wantErr(t, st.CheckpointText(ctx, run.ID, piece("x"), -1), agentstream.ErrInvalid, "a negative position")
	wantErr(t, st.CheckpointText(ctx, run.ID, piece("x"), n+1), agentstream.ErrConflict, "past the end (a gap)")
	wantErr(t, st.CheckpointText(ctx, run.ID, piece("x"), n-1), agentstream.ErrConflict, "inside the text")
	other := piece("x")
	other.ID = agentstream.NewID("msg_")
	wantErr(t, st.CheckpointText(ctx, run.ID, other, 1), agentstream.ErrConflict, "a message not saved")
	// A complete message of the run.
	complete := withSeq(assistant(run, "done", agentstream.MessageComplete, at(11)), 3)
	if err := st.CheckpointRun(ctx, run.ID, []agentstream.Message{complete}); err != nil {
		t.Fatalf("CheckpointRun: %v", err)
	}
	more := complete
	more.Content = " and more"
	wantErr(t, st.CheckpointText(ctx, run.ID, more, 4), agentstream.ErrConflict, "a complete message")
	bad := piece("x")
	bad.ID = "msg\x00"
	wantErr(t, st.CheckpointText(ctx, run.ID, bad, 1), agentstream.ErrInvalid, "a message ID no store holds")
	checkMessages(t, st, th.ID, in, msg, complete)

	// A message of another run, on another thread.
	th2 := createThread(t, st, "user-1")
	run2, in2 := runningRun(t, st, th2, at(12))
	wantErr(t, st.CheckpointText(ctx, run2.ID, piece("x"), n), agentstream.ErrConflict, "a message of another run")
	checkMessages(t, st, th2.ID, in2)

	// A queued run, and a finished one.
	th3 := createThread(t, st, "user-1")
	queued, in3 := createRun(t, st, th3, at(13))
	q := assistant(queued, "q", agentstream.MessagePartial, at(14))
	wantErr(t, st.CheckpointText(ctx, queued.ID, q, 0), agentstream.ErrConflict, "a queued run at 0")
	wantErr(t, st.CheckpointText(ctx, queued.ID, q, 1), agentstream.ErrConflict, "a queued run")
	checkMessages(t, st, th3.ID, in3)
	done := finished(run, agentstream.RunCompleted, nil, agentstream.Usage{}, at(15))
	if err := st.FinishRun(ctx, done, nil); err != nil {
		t.Fatalf("FinishRun: %v", err)
	}
	wantErr(t, st.CheckpointText(ctx, run.ID, piece("x"), n), agentstream.ErrConflict, "a finished run")
	checkMessages(t, st, th.ID, in, msg, complete)
}

// testCheckpointTextAgain: a save made again at the same position (its
// outcome was not known) replaces the shorter text there, and is never
// replaced by a shorter one; the text goes on after the longer.
func (s suite) testCheckpointTextAgain(t *testing.T) {
	st := s.open(t)
	th := createThread(t, st, "user-1")
	run, in := runningRun(t, st, th, at(10))
	msg := withSeq(assistant(run, "", agentstream.MessagePartial, at(11)), 2)
	head := appendPieces(t, st, run, msg, 0, []string{"début "})
	n := int64(len(head))
	save := func(s string, at int64) {
		t.Helper()
		m := msg
		m.Content = s
		if err := st.CheckpointText(t.Context(), run.ID, m, at); err != nil {
			t.Fatalf("CheckpointText(%q, %d): %v", s, at, err)
		}
	}
	save("ünë", n)
	save("ünë dœux", n) // again, with what came since
	want := msg
	want.Content = head + "ünë dœux"
	checkMessages(t, st, th.ID, in, want)
	save("ünë", n) // a stale one changes nothing
	checkMessages(t, st, th.ID, in, want)
	last := int64(len(want.Content))
	save(" trois", last)
	want.Content += " trois"
	checkMessages(t, st, th.ID, in, want)

	// Only the last part may be saved again, and only with a text that
	// extends it or is a prefix of it: anything else would garble the
	// text.
	m := msg
	m.Content = "ünë dœux et plus"
	wantErr(t, st.CheckpointText(t.Context(), run.ID, m, n), agentstream.ErrConflict, "an earlier part again")
	m.Content = " quatre"
	wantErr(t, st.CheckpointText(t.Context(), run.ID, m, last), agentstream.ErrConflict, "the last part again with another text")
	checkMessages(t, st, th.ID, in, want)
}

// testCheckpointTextReaders: readers while text is appended, then saved
// whole, see a prefix of the final text each time, never shorter than
// what they saw before.
func (s suite) testCheckpointTextReaders(t *testing.T) {
	st := s.open(t)
	th := createThread(t, st, "user-1")
	run, _ := runningRun(t, st, th, at(10))
	msg := withSeq(assistant(run, "", agentstream.MessagePartial, at(11)), 2)
	var all []string
	for i := range 60 {
		all = append(all, pieces[i%len(pieces)])
	}
	final := strings.Join(all, "")
	stop := make(chan struct{})
	var wg, reading sync.WaitGroup
	errs := make(chan error, 2)
	reading.Add(2)
	for range 2 {
		wg.Go(func() {
			seen := ""
			for reads := 0; ; reads++ {
				if reads == 1 {
					reading.Done()
				}
				select {
				case <-stop:
					return
				default:
				}
				msgs, err := st.ListMessages(context.WithoutCancel(t.Context()), th.ID)
				if err != nil {
					errs <- err
					if reads == 0 {
						reading.Done()
					}
					return
				}
				if len(msgs) < 2 {
					continue
				}
				got := msgs[1].Content
				if !strings.HasPrefix(final, got) || len(got) < len(seen) {
					errs <- errors.New("read " + show(got) + " after " + show(seen))
					return
				}
				seen = got
			}
		})
	}
	reading.Wait() // the readers run while the text is written
	appendPieces(t, st, run, msg, 0, all)
	msg.Content, msg.Status = final, agentstream.MessageComplete
	if err := st.FinishRun(t.Context(), finished(run, agentstream.RunCompleted, nil, agentstream.Usage{}, at(12)), []agentstream.Message{msg}); err != nil {
		t.Fatalf("FinishRun: %v", err)
	}
	// One more round of reads after the end.
	msgs, err := st.ListMessages(t.Context(), th.ID)
	if err != nil || len(msgs) != 2 || msgs[1].Content != final {
		t.Fatalf("after the end: %v, %v", msgs, err)
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// CheckpointTextFolds checks, with parts counting the rows a store keeps
// for text CheckpointText appended, that those rows are folded or dropped
// by a whole save: a tool boundary's CheckpointRun, a FinishRun, and an
// interruption. A store's own tests call it, as only they can count.
func CheckpointTextFolds(t *testing.T, st agentstream.Store, parts func(t testing.TB) int) {
	t.Helper()
	appendAndCount := func(run agentstream.Run, msg agentstream.Message) string {
		t.Helper()
		before := parts(t)
		text := appendPieces(t, st, run, msg, 0, pieces)
		if got := parts(t); got <= before {
			t.Fatalf("%d parts after appending, %d before: the count does not count", got, before)
		}
		return text
	}
	th := createThread(t, st, "user-1")
	run, _ := runningRun(t, st, th, at(10))
	msg := assistant(run, "", agentstream.MessagePartial, at(11))
	msg.Content = appendAndCount(run, msg)
	if err := st.CheckpointRun(t.Context(), run.ID, []agentstream.Message{msg}); err != nil {
		t.Fatalf("CheckpointRun: %v", err)
	}
	if n := parts(t); n != 0 {
		t.Errorf("%d parts after a tool boundary's whole save", n)
	}
	msg2 := assistant(run, "", agentstream.MessagePartial, at(12))
	msg2.Content = appendAndCount(run, msg2)
	if err := st.FinishRun(t.Context(), finished(run, agentstream.RunCompleted, nil, agentstream.Usage{}, at(13)), []agentstream.Message{msg2}); err != nil {
		t.Fatalf("FinishRun: %v", err)
	}
	if n := parts(t); n != 0 {
		t.Errorf("%d parts after FinishRun", n)
	}
	run2, _ := runningRun(t, st, th, at(20))
	msg3 := assistant(run2, "", agentstream.MessagePartial, at(21))
	appendAndCount(run2, msg3)
	if _, err := st.InterruptRuns(t.Context(), at(22), interrupted); err != nil {
		t.Fatalf("InterruptRuns: %v", err)
	}
	if n := parts(t); n != 0 {
		t.Errorf("%d parts after InterruptRuns", n)
	}
}
