package storetest

import (
	"strings"
	"testing"

	"github.com/agentstream/agentstream"
)

// randomID returns an ID of n bytes that does not compress (PostgreSQL
// would index a long repetitive one that it cannot index when random).
func randomID(prefix string, n int) string {
	var b strings.Builder
	b.WriteString(prefix)
	for b.Len() < n {
		b.WriteString(agentstream.NewID(""))
	}
	return b.String()[:n]
}

// testClientID: a thread keeps the id its user chose; two users each have
// a thread of one client id, under their own keys.
func (s suite) testClientID(t *testing.T) {
	st := s.open(t)
	a, b := newThread("user-1"), newThread("user-2")
	a.ID, a.ClientID = agentstream.ThreadKey("user-1", "hana-1"), "hana-1"
	b.ID, b.ClientID = agentstream.ThreadKey("user-2", "hana-1"), "hana-1"
	plain := newThread("user-1")
	for _, th := range []agentstream.Thread{a, b, plain} {
		if err := st.CreateThread(t.Context(), th); err != nil {
			t.Fatalf("CreateThread(%s): %v", th.ID, err)
		}
		got, err := st.GetThread(t.Context(), th.UserID, th.ID)
		if err != nil {
			t.Fatalf("GetThread(%s): %v", th.ID, err)
		}
		checkThread(t, got, th)
	}
	// The client id is not a key.
	_, err := st.GetThread(t.Context(), "user-1", "hana-1")
	wantErr(t, err, agentstream.ErrNotFound, "GetThread by client id")
}

// testLongestID: IDs of MaxIDBytes bytes work everywhere, on every store.
func (s suite) testLongestID(t *testing.T) {
	st := s.open(t)
	th := newThread("user-1")
	th.ID, th.ClientID = randomID("thr_", agentstream.MaxIDBytes), randomID("c-", agentstream.MaxIDBytes)
	if err := st.CreateThread(t.Context(), th); err != nil {
		t.Fatalf("CreateThread: %v", err)
	}
	got, err := st.GetThread(t.Context(), th.UserID, th.ID)
	if err != nil {
		t.Fatalf("GetThread: %v", err)
	}
	checkThread(t, got, th)
	run, in := newRun(th, at(1))
	run.ID, in.ID = randomID("run_", agentstream.MaxIDBytes), randomID("msg_", agentstream.MaxIDBytes)
	in.RunID = run.ID
	stored, err := st.CreateRun(t.Context(), run, in)
	if err != nil {
		t.Fatalf("CreateRun: %v", err)
	}
	run = startRun(t, st, run, at(2))
	answer := assistant(run, "an answer", agentstream.MessageComplete, at(3))
	answer.ID = randomID("msg_", agentstream.MaxIDBytes)
	if err := st.CheckpointRun(t.Context(), run.ID, []agentstream.Message{answer}); err != nil {
		t.Fatalf("CheckpointRun: %v", err)
	}
	done := finished(run, agentstream.RunCompleted, nil, agentstream.Usage{}, at(4))
	if err := st.FinishRun(t.Context(), done, []agentstream.Message{answer}); err != nil {
		t.Fatalf("FinishRun: %v", err)
	}
	gotRun, err := st.GetRun(t.Context(), run.UserID, run.ID)
	if err != nil {
		t.Fatalf("GetRun: %v", err)
	}
	checkRun(t, gotRun, done)
	checkMessages(t, st, th.ID, stored, withSeq(answer, 2))
}

// testRefusedThreads: every store refuses the same threads, with
// ErrInvalid, and keeps nothing of them.
func (s suite) testRefusedThreads(t *testing.T) {
	st := s.open(t)
	for _, tc := range []struct {
		name string
		mod  func(*agentstream.Thread)
	}{
		{"id over MaxIDBytes", func(th *agentstream.Thread) { th.ID = randomID("thr_", agentstream.MaxIDBytes+1) }},
		{"id of 3000 bytes", func(th *agentstream.Thread) { th.ID = randomID("thr_", 3000) }},
		{"NUL in id", func(th *agentstream.Thread) { th.ID += "\x00" }},
		{"invalid UTF-8 in id", func(th *agentstream.Thread) { th.ID += "\xff" }},
		{"client id over MaxIDBytes", func(th *agentstream.Thread) { th.ClientID = randomID("c-", agentstream.MaxIDBytes+1) }},
		{"NUL in client id", func(th *agentstream.Thread) { th.ClientID = "hana\x00" }},
		{"NUL in user id", func(th *agentstream.Thread) { th.UserID += "\x00" }},
		{"NUL in agent", func(th *agentstream.Thread) { th.Agent = "a\x00" }},
		{"invalid UTF-8 in agent", func(th *agentstream.Thread) { th.Agent = "a\xc3" }},
		{"NUL in title", func(th *agentstream.Thread) { th.Title = "a\x00b" }},
		{"invalid UTF-8 in title", func(th *agentstream.Thread) { th.Title = "a\xffb" }},
		{"a surrogate in title", func(th *agentstream.Thread) { th.Title = "\xed\xa0\x80" }}, // U+D800 as UTF-8
		{"NUL in a metadata key", func(th *agentstream.Thread) { th.Metadata = map[string]any{"k\x00": "v"} }},
		{"NUL in a metadata value", func(th *agentstream.Thread) {
			th.Metadata = map[string]any{"k": []any{map[string]any{"deep": "v\x00"}}}
		}},
		{"NUL in a context value", func(th *agentstream.Thread) { th.Context = map[string]any{"baby_name": "\x00"} }},
	} {
		th := newThread("user-1")
		tc.mod(&th)
		wantErr(t, st.CreateThread(t.Context(), th), agentstream.ErrInvalid, "CreateThread with "+tc.name)
		_, err := st.GetThread(t.Context(), th.UserID, th.ID)
		wantErr(t, err, agentstream.ErrNotFound, "GetThread after a refused CreateThread with "+tc.name)
	}
}

// testRefusedRuns: every store refuses the same runs and inputs, with
// ErrInvalid, and keeps nothing of them.
func (s suite) testRefusedRuns(t *testing.T) {
	st := s.open(t)
	th := createThread(t, st, "user-1")
	for _, tc := range []struct {
		name string
		mod  func(*agentstream.Run, *agentstream.Message)
	}{
		{"run id over MaxIDBytes", func(r *agentstream.Run, _ *agentstream.Message) { r.ID = randomID("run_", agentstream.MaxIDBytes+1) }},
		{"NUL in run id", func(r *agentstream.Run, _ *agentstream.Message) { r.ID += "\x00" }},
		{"NUL in agent", func(r *agentstream.Run, _ *agentstream.Message) { r.Agent += "\x00" }},
		{"invalid UTF-8 in user id", func(r *agentstream.Run, _ *agentstream.Message) { r.UserID += "\xff" }},
		{"NUL in a context key", func(r *agentstream.Run, _ *agentstream.Message) { r.Context = map[string]any{"\x00": 1.0} }},
		{"message id over MaxIDBytes", func(_ *agentstream.Run, m *agentstream.Message) { m.ID = randomID("msg_", 3000) }},
		{"NUL in input", func(_ *agentstream.Run, m *agentstream.Message) { m.Content = "hi\x00" }},
		{"invalid UTF-8 in input", func(_ *agentstream.Run, m *agentstream.Message) { m.Content = "hi\xff" }},
		{"a surrogate in input", func(_ *agentstream.Run, m *agentstream.Message) { m.Content = "hi \xed\xb0\x80" }},
	} {
		run, in := newRun(th, at(1))
		tc.mod(&run, &in)
		_, err := st.CreateRun(t.Context(), run, in)
		wantErr(t, err, agentstream.ErrInvalid, "CreateRun with "+tc.name)
		_, err = st.GetRun(t.Context(), run.UserID, run.ID)
		wantErr(t, err, agentstream.ErrNotFound, "GetRun after a refused CreateRun with "+tc.name)
	}
	checkMessages(t, st, th.ID)
	// No run was left active: the thread takes one.
	createRun(t, st, th, at(2))
}

// testRefusedMessageIDs: a run's messages with IDs no store can hold are
// refused, and nothing of the call is written.
func (s suite) testRefusedMessageIDs(t *testing.T) {
	st := s.open(t)
	th := createThread(t, st, "user-1")
	run, in := runningRun(t, st, th, at(1))
	good := assistant(run, "kept", agentstream.MessagePartial, at(2))
	for _, id := range []string{randomID("msg_", agentstream.MaxIDBytes+1), "msg_\x00", "msg_\xff"} {
		bad := assistant(run, "refused", agentstream.MessageComplete, at(3))
		bad.ID = id
		wantErr(t, st.CheckpointRun(t.Context(), run.ID, []agentstream.Message{good, bad}), agentstream.ErrInvalid, "CheckpointRun with a bad message id")
		wantErr(t, st.FinishRun(t.Context(), finished(run, agentstream.RunCompleted, nil, agentstream.Usage{}, at(4)), []agentstream.Message{good, bad}),
			agentstream.ErrInvalid, "FinishRun with a bad message id")
	}
	checkMessages(t, st, th.ID, in)
	got, err := st.GetRun(t.Context(), run.UserID, run.ID)
	if err != nil {
		t.Fatalf("GetRun: %v", err)
	}
	checkRun(t, got, run)
}

// testImpossibleLookups: an ID no store can hold (a NUL, invalid UTF-8)
// is not found, the same on every store, rather than an error on one.
func (s suite) testImpossibleLookups(t *testing.T) {
	st := s.open(t)
	ctx := t.Context()
	th := createThread(t, st, "user-1")
	run, _ := createRun(t, st, th, at(1))
	for _, bad := range []string{"\x00", "\xff", "\xed\xa0\x80"} {
		_, err := st.GetThread(ctx, th.UserID, th.ID+bad)
		wantErr(t, err, agentstream.ErrNotFound, "GetThread of an impossible id")
		_, err = st.GetThread(ctx, th.UserID+bad, th.ID)
		wantErr(t, err, agentstream.ErrNotFound, "GetThread of an impossible user")
		_, err = st.GetRun(ctx, run.UserID, run.ID+bad)
		wantErr(t, err, agentstream.ErrNotFound, "GetRun of an impossible id")
		_, err = st.GetRun(ctx, run.UserID+bad, run.ID)
		wantErr(t, err, agentstream.ErrNotFound, "GetRun of an impossible user")
		msgs, err := st.ListMessages(ctx, th.ID+bad)
		if err != nil || len(msgs) != 0 {
			t.Fatalf("ListMessages of an impossible id: %v, %v; want no messages and no error", msgs, err)
		}
		wantErr(t, st.StartRun(ctx, run.ID+bad, at(2)), agentstream.ErrNotFound, "StartRun of an impossible id")
		wantErr(t, st.CheckpointRun(ctx, run.ID+bad, nil), agentstream.ErrNotFound, "CheckpointRun of an impossible id")
		bogus := finished(run, agentstream.RunCancelled, nil, agentstream.Usage{}, at(3))
		bogus.ID += bad
		wantErr(t, st.FinishRun(ctx, bogus, nil), agentstream.ErrNotFound, "FinishRun of an impossible id")
		ids, err := st.RenewLeases(ctx, "owner"+bad, at(4))
		if err != nil || len(ids) != 0 {
			t.Fatalf("RenewLeases of an impossible owner: %v, %v", ids, err)
		}
		_, err = st.InterruptRuns(ctx, at(5), agentstream.ErrorInfo{Code: agentstream.CodeInterrupted, Message: "bye" + bad})
		wantErr(t, err, agentstream.ErrInvalid, "InterruptRuns with an error no store can keep")
	}
	// Nothing moved.
	got, err := st.GetRun(ctx, run.UserID, run.ID)
	if err != nil {
		t.Fatalf("GetRun: %v", err)
	}
	checkRun(t, got, run)
}

// testJSONAsEncoded: a map's strings are stored as encoding/json writes
// them, by every store: invalid UTF-8 becomes U+FFFD (only a NUL is
// refused), and text that merely looks like the escape \u0000 is kept.
func (s suite) testJSONAsEncoded(t *testing.T) {
	st := s.open(t)
	th := newThread("user-1")
	th.Metadata = map[string]any{"bad\xff": "a\xffb", "surrogate": "\xed\xa0\x80", "escape": `\u0000 and \\u0000`}
	if err := st.CreateThread(t.Context(), th); err != nil {
		t.Fatalf("CreateThread: %v", err)
	}
	got, err := st.GetThread(t.Context(), th.UserID, th.ID)
	if err != nil {
		t.Fatalf("GetThread: %v", err)
	}
	th.Metadata = map[string]any{"bad\ufffd": "a\ufffdb", "surrogate": "\ufffd\ufffd\ufffd", "escape": `\u0000 and \\u0000`}
	checkThread(t, got, th)
}
