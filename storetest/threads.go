package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
)

func (s suite) testCreateThreadRoundTrip(t *testing.T) {
	st := s.open(t)
	th := newThread("user-1")
	th.Agent = "nanny"
	th.Title = "Première nuit 🌙 \"quoted\"\nsecond line"
	th.Metadata = map[string]any{
		"source": "web",
		"count":  3.0,
		"nested": map[string]any{
			"tags": []any{"a", "b", 1.5, true, nil},
			"deep": map[string]any{"ok": false, "empty": map[string]any{}, "list": []any{}},
		},
		"html": "<b>&</b>",
	}
	th.Context = map[string]any{
		"baby_name":  "Ada",
		"age_months": 7.0,
		"prefs":      map[string]any{"lang": "fr", "units": []any{"metric"}},
	}
	th.CreatedAt, th.UpdatedAt = at(0), at(1)
	if err := st.CreateThread(t.Context(), th); err != nil {
		t.Fatalf("CreateThread: %v", err)
	}
	got, err := st.GetThread(t.Context(), th.UserID, th.ID)
	if err != nil {
		t.Fatalf("GetThread: %v", err)
	}
	checkThread(t, got, th)
	if !got.CreatedAt.Equal(at(0).Truncate(time.Microsecond)) {
		t.Errorf("CreatedAt = %v, want %v (microseconds kept, nanoseconds dropped)", got.CreatedAt, at(0).Truncate(time.Microsecond))
	}
}

func (s suite) testCreateThreadEmptyMaps(t *testing.T) {
	st := s.open(t)
	th := newThread("user-1")
	th.Metadata = map[string]any{}
	th.Context = nil
	if err := st.CreateThread(t.Context(), th); err != nil {
		t.Fatalf("CreateThread: %v", err)
	}
	got, err := st.GetThread(t.Context(), th.UserID, th.ID)
	if err != nil {
		t.Fatalf("GetThread: %v", err)
	}
	if got.Metadata != nil || got.Context != nil {
		t.Errorf("Metadata, Context = %#v, %#v; want nil, nil", got.Metadata, got.Context)
	}
	checkThread(t, got, th)
}

func (s suite) testCreateThreadDuplicateID(t *testing.T) {
	st := s.open(t)
	th := createThread(t, st, "user-1")

	again := th
	again.Title = "Another title"
	wantErr(t, st.CreateThread(t.Context(), again), agentstream.ErrConflict, "CreateThread with the same ID")

	foreign := th
	foreign.UserID = "user-2"
	foreign.Title = "Someone else's"
	wantErr(t, st.CreateThread(t.Context(), foreign), agentstream.ErrConflict, "CreateThread with the ID of another user's thread")

	got, err := st.GetThread(t.Context(), th.UserID, th.ID)
	if err != nil {
		t.Fatalf("GetThread: %v", err)
	}
	checkThread(t, got, th)
	_, err = st.GetThread(t.Context(), "user-2", th.ID)
	wantErr(t, err, agentstream.ErrNotFound, "GetThread by the user of the refused duplicate")
}

func (s suite) testCreateThreadUnencodable(t *testing.T) {
	st := s.open(t)
	for _, th := range []agentstream.Thread{
		func() agentstream.Thread {
			th := newThread("user-1")
			th.Metadata = map[string]any{"f": func() {}}
			return th
		}(),
		func() agentstream.Thread {
			th := newThread("user-1")
			th.Context = map[string]any{"c": make(chan int)}
			return th
		}(),
	} {
		wantErr(t, st.CreateThread(t.Context(), th), agentstream.ErrInvalid, "CreateThread with a map that is not JSON")
		_, err := st.GetThread(t.Context(), th.UserID, th.ID)
		wantErr(t, err, agentstream.ErrNotFound, "GetThread of the refused thread")
	}
}

func (s suite) testGetThreadMissing(t *testing.T) {
	st := s.open(t)
	createThread(t, st, "user-1")
	_, err := st.GetThread(t.Context(), "user-1", agentstream.NewID("thr_"))
	wantErr(t, err, agentstream.ErrNotFound, "GetThread of a missing thread")
}

func (s suite) testGetThreadOtherUser(t *testing.T) {
	st := s.open(t)
	th := createThread(t, st, "user-1")
	_, err := st.GetThread(t.Context(), "user-2", th.ID)
	wantErr(t, err, agentstream.ErrNotFound, "GetThread of another user's thread")
	_, err = st.GetThread(t.Context(), "", th.ID)
	wantErr(t, err, agentstream.ErrNotFound, "GetThread with an empty user")
}

func (s suite) testListMessages(t *testing.T) {
	st := s.open(t)
	th := createThread(t, st, "user-1")
	run, in := runningRun(t, st, th, at(10))
	calls := []agentstream.ToolCall{
		{ID: "call_1", Name: "get_weather", Arguments: `{"city":"Paris","days":[1,2]}`},
		{ID: "call_2", Name: "get_time", Arguments: `not json {`},
	}
	a1 := assistant(run, "", agentstream.MessageComplete, at(11), calls...)
	r1 := toolResult(run, calls[0], `{"temp":21}`, at(12))
	r2 := toolResult(run, calls[1], "error: bad arguments", at(13))
	a2 := assistant(run, "It is 21°C in Paris.\n\n```\ncode\n```", agentstream.MessageComplete, at(14))
	// One message alone, then three in one call: within a call, Seq follows
	// the slice's order.
	if err := st.CheckpointRun(t.Context(), run.ID, []agentstream.Message{a1}); err != nil {
		t.Fatalf("CheckpointRun: %v", err)
	}
	if err := st.CheckpointRun(t.Context(), run.ID, []agentstream.Message{r1, r2, a2}); err != nil {
		t.Fatalf("CheckpointRun: %v", err)
	}
	checkMessages(t, st, th.ID, in, withSeq(a1, 2), withSeq(r1, 3), withSeq(r2, 4), withSeq(a2, 5))

	// Another thread's messages do not show.
	other := createThread(t, st, "user-1")
	_, otherIn := createRun(t, st, other, at(20))
	checkMessages(t, st, th.ID, in, withSeq(a1, 2), withSeq(r1, 3), withSeq(r2, 4), withSeq(a2, 5))
	checkMessages(t, st, other.ID, otherIn)
}

// testListMessagesMany: Seq is a number (10 comes after 9), assigned in
// the order of the calls and, within a call, of the slice.
func (s suite) testListMessagesMany(t *testing.T) {
	st := s.open(t)
	th := createThread(t, st, "user-1")
	run, in := runningRun(t, st, th, at(10))
	want := []agentstream.Message{in}
	for i, n := range []int{1, 9, 2, 15} {
		var batch []agentstream.Message
		if i > 0 {
			// An update of the previous call's last message does not move it.
			last := &want[len(want)-1]
			last.Content += " (edited)"
			batch = append(batch, *last)
		}
		for j := range n {
			// Created earlier than the messages before it: Seq, not
			// CreatedAt, orders a thread.
			m := assistant(run, fmt.Sprintf("call %d, message %d", i, j), agentstream.MessageComplete, at(100-len(want)))
			batch = append(batch, m)
			want = append(want, withSeq(m, int64(len(want)+1)))
		}
		if err := st.CheckpointRun(t.Context(), run.ID, batch); err != nil {
			t.Fatalf("CheckpointRun: %v", err)
		}
	}
	checkMessages(t, st, th.ID, want...)
}

func (s suite) testListMessagesEmpty(t *testing.T) {
	st := s.open(t)
	th := createThread(t, st, "user-1")
	got, err := st.ListMessages(t.Context(), th.ID)
	if err != nil {
		t.Fatalf("ListMessages: %v", err)
	}
	if len(got) != 0 || got == nil {
		t.Fatalf("ListMessages of a new thread: %#v, want an empty, non-nil list", got)
	}
}

func (s suite) testPing(t *testing.T) {
	st := s.open(t)
	if err := st.Ping(t.Context()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

func (s suite) testClose(t *testing.T) {
	st := s.newStore(t)
	if st == nil {
		t.Fatal("newStore returned nil")
	}
	createThread(t, st, "user-1")
	if err := st.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := st.Ping(t.Context()); err == nil {
		t.Fatalf("Ping after Close: no error")
	}
}
