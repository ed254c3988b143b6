package storetest

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
)

// listThreads pages through user's threads limit at a time and returns
// the pages.
func listThreads(t testing.TB, st agentstream.Store, user string, limit int) [][]agentstream.Thread {
	t.Helper()
	var pages [][]agentstream.Thread
	var after *agentstream.ListPosition
	for range 1000 { // bounded: a store that never ends a listing fails below
		page, err := st.ListThreads(t.Context(), user, after, limit)
		if err != nil {
			t.Fatalf("ListThreads: %v", err)
		}
		if len(page) > limit {
			t.Fatalf("ListThreads: %d threads, more than the limit %d", len(page), limit)
		}
		if len(page) == 0 {
			return pages
		}
		pages = append(pages, page)
		last := page[len(page)-1]
		after = &agentstream.ListPosition{CreatedAt: last.CreatedAt, ID: last.ID}
	}
	t.Fatalf("ListThreads: no end after 1000 pages")
	return nil
}

func threadIDs(pages ...[]agentstream.Thread) []string {
	var ids []string
	for _, p := range pages {
		for _, th := range p {
			ids = append(ids, th.ID)
		}
	}
	return ids
}

// testListThreadsOrder: newest first by CreatedAt, then ID descending;
// other users' threads never show; each thread as GetThread reads it.
func (s suite) testListThreadsOrder(t *testing.T) {
	st := s.open(t)
	var want []agentstream.Thread
	// Four threads at the same instant (ties broken by ID), and others at
	// distinct times, created out of order.
	for i, sec := range []int{5, 1, 3, 3, 3, 3, 9, 0} {
		th := newThread("user-1")
		th.CreatedAt, th.UpdatedAt = at(sec), at(sec+1)
		th.Title = fmt.Sprintf("thread %d", i)
		th.Metadata = map[string]any{"i": float64(i)}
		if i == 2 {
			th.ClientID = "chosen-id"
		}
		if err := st.CreateThread(t.Context(), th); err != nil {
			t.Fatalf("CreateThread: %v", err)
		}
		want = append(want, th)
		other := newThread("user-2")
		other.CreatedAt = at(sec)
		if err := st.CreateThread(t.Context(), other); err != nil {
			t.Fatalf("CreateThread: %v", err)
		}
	}
	slices.SortFunc(want, func(a, b agentstream.Thread) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return -compareStrings(a.ID, b.ID)
	})
	for _, limit := range []int{1, 3, len(want), 100} {
		pages := listThreads(t, st, "user-1", limit)
		got := slices.Concat(pages...)
		if !slices.Equal(threadIDs(got), threadIDs(want)) {
			t.Fatalf("limit %d: threads %v, want %v", limit, threadIDs(got), threadIDs(want))
		}
		for i := range want {
			checkThread(t, got[i], want[i])
		}
		if wantPages := (len(want) + limit - 1) / limit; len(pages) != wantPages {
			t.Errorf("limit %d: %d pages, want %d", limit, len(pages), wantPages)
		}
	}
	got, err := st.ListThreads(t.Context(), "user-3", nil, 10)
	if err != nil || len(got) != 0 {
		t.Errorf("ListThreads of a user without threads: %v, %v; want none", threadIDs(got), err)
	}
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// testListThreadsConcurrent: pages neither skip nor repeat a thread while
// threads are created meanwhile (each later than the ones before).
func (s suite) testListThreadsConcurrent(t *testing.T) {
	st := s.open(t)
	const existing, added = 30, 30
	before := map[string]bool{}
	for i := range existing {
		th := newThread("user-1")
		th.CreatedAt = at(i / 3) // three threads per instant: ties too
		if err := st.CreateThread(t.Context(), th); err != nil {
			t.Fatalf("CreateThread: %v", err)
		}
		before[th.ID] = true
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, added)
	wg.Go(func() {
		<-start
		for i := range added {
			th := newThread("user-1")
			th.CreatedAt = at(existing + i/2)
			if err := st.CreateThread(t.Context(), th); err != nil {
				errs <- err
				return
			}
		}
	})
	close(start)
	seen := map[string]bool{}
	var after *agentstream.ListPosition
	for range 1000 {
		page, err := st.ListThreads(t.Context(), "user-1", after, 4)
		if err != nil {
			t.Fatalf("ListThreads: %v", err)
		}
		if len(page) == 0 {
			break
		}
		for _, th := range page {
			if seen[th.ID] {
				t.Fatalf("thread %s listed twice", th.ID)
			}
			seen[th.ID] = true
		}
		last := page[len(page)-1]
		after = &agentstream.ListPosition{CreatedAt: last.CreatedAt, ID: last.ID}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("CreateThread: %v", err)
	}
	for id := range before {
		if !seen[id] {
			t.Errorf("thread %s, there before the listing started, was skipped", id)
		}
	}
}

func (s suite) testListThreadsLimit(t *testing.T) {
	st := s.open(t)
	createThread(t, st, "user-1")
	for _, limit := range []int{0, -1} {
		_, err := st.ListThreads(t.Context(), "user-1", nil, limit)
		wantErr(t, err, agentstream.ErrInvalid, fmt.Sprintf("ListThreads with limit %d", limit))
		_, err = st.ListRuns(t.Context(), "thr_x", nil, limit)
		wantErr(t, err, agentstream.ErrInvalid, fmt.Sprintf("ListRuns with limit %d", limit))
		_, err = st.ListMessagesAfter(t.Context(), "thr_x", 0, limit)
		wantErr(t, err, agentstream.ErrInvalid, fmt.Sprintf("ListMessagesAfter with limit %d", limit))
	}
	// A position past every thread: nothing.
	got, err := st.ListThreads(t.Context(), "user-1", &agentstream.ListPosition{CreatedAt: at(-100), ID: "thr_"}, 10)
	if err != nil || len(got) != 0 {
		t.Errorf("ListThreads after the oldest: %v, %v; want none", threadIDs(got), err)
	}
}

// testUpdateThread: title replaced, metadata merged (nil removes a key),
// UpdatedAt set; the rest unchanged.
func (s suite) testUpdateThread(t *testing.T) {
	st := s.open(t)
	th := newThread("user-1")
	th.ClientID = "mine"
	th.Metadata = map[string]any{"keep": "k", "replace": 1.0, "remove": true}
	th.Context = map[string]any{"baby_name": "Ada"}
	if err := st.CreateThread(t.Context(), th); err != nil {
		t.Fatalf("CreateThread: %v", err)
	}
	got, err := st.UpdateThread(t.Context(), th.UserID, th.ID, agentstream.ThreadUpdate{
		Title:     ptr("Renamed"),
		Metadata:  map[string]any{"replace": map[string]any{"n": 2.0}, "remove": nil, "new": []any{"x"}, "absent": nil},
		UpdatedAt: at(50),
	})
	if err != nil {
		t.Fatalf("UpdateThread: %v", err)
	}
	want := th
	want.Title = "Renamed"
	want.Metadata = map[string]any{"keep": "k", "replace": map[string]any{"n": 2.0}, "new": []any{"x"}}
	want.UpdatedAt = at(50)
	checkThread(t, got, want)
	stored, err := st.GetThread(t.Context(), th.UserID, th.ID)
	if err != nil {
		t.Fatalf("GetThread: %v", err)
	}
	checkThread(t, stored, want)

	// No title: the title stays; removing every key leaves no metadata.
	got, err = st.UpdateThread(t.Context(), th.UserID, th.ID, agentstream.ThreadUpdate{
		Metadata: map[string]any{"keep": nil, "replace": nil, "new": nil}, UpdatedAt: at(51),
	})
	if err != nil {
		t.Fatalf("UpdateThread: %v", err)
	}
	want.Metadata, want.UpdatedAt = nil, at(51)
	checkThread(t, got, want)
	// An empty title is a title.
	got, err = st.UpdateThread(t.Context(), th.UserID, th.ID, agentstream.ThreadUpdate{Title: ptr(""), UpdatedAt: at(52)})
	if err != nil {
		t.Fatalf("UpdateThread: %v", err)
	}
	want.Title, want.UpdatedAt = "", at(52)
	checkThread(t, got, want)
}

func (s suite) testUpdateThreadRefused(t *testing.T) {
	st := s.open(t)
	th := createThread(t, st, "user-1")
	u := agentstream.ThreadUpdate{Title: ptr("x"), UpdatedAt: at(5)}
	_, err := st.UpdateThread(t.Context(), "user-2", th.ID, u)
	wantErr(t, err, agentstream.ErrNotFound, "UpdateThread of another user's thread")
	_, err = st.UpdateThread(t.Context(), "user-1", agentstream.NewID("thr_"), u)
	wantErr(t, err, agentstream.ErrNotFound, "UpdateThread of a missing thread")
	_, err = st.UpdateThread(t.Context(), "user-1", "bad\x00id", u)
	wantErr(t, err, agentstream.ErrNotFound, "UpdateThread of an impossible id")
	for _, bad := range []agentstream.ThreadUpdate{
		{Title: ptr("nul \x00 title"), UpdatedAt: at(5)},
		{Title: ptr("bad \xff utf-8"), UpdatedAt: at(5)},
		{Metadata: map[string]any{"k": "nul \x00"}, UpdatedAt: at(5)},
		{Metadata: map[string]any{"f": func() {}}, UpdatedAt: at(5)},
	} {
		_, err := st.UpdateThread(t.Context(), "user-1", th.ID, bad)
		wantErr(t, err, agentstream.ErrInvalid, "UpdateThread with a value no store keeps")
	}
	got, err := st.GetThread(t.Context(), th.UserID, th.ID)
	if err != nil {
		t.Fatalf("GetThread: %v", err)
	}
	checkThread(t, got, th) // nothing written
}

// testDeleteThread: the thread, its messages and its runs are gone; other
// threads stay; the same ID can be used again and starts empty.
func (s suite) testDeleteThread(t *testing.T) {
	st := s.open(t)
	th := createThread(t, st, "user-1")
	run1, _ := runningRun(t, st, th, at(10))
	a := assistant(run1, "answer", agentstream.MessageComplete, at(11))
	if err := st.FinishRun(t.Context(), finished(run1, agentstream.RunCompleted, nil, agentstream.Usage{}, at(12)),
		[]agentstream.Message{a}); err != nil {
		t.Fatalf("FinishRun: %v", err)
	}
	run2, _ := runningRun(t, st, th, at(20))
	if err := st.FinishRun(t.Context(), finished(run2, agentstream.RunFailed,
		&agentstream.ErrorInfo{Code: agentstream.CodeUpstream, Message: "x"}, agentstream.Usage{}, at(21)), nil); err != nil {
		t.Fatalf("FinishRun: %v", err)
	}
	other := createThread(t, st, "user-1")
	otherRun, otherIn := createRun(t, st, other, at(30))

	_, err := st.UpdateThread(t.Context(), "user-1", th.ID, agentstream.ThreadUpdate{Title: ptr("x"), UpdatedAt: at(31)})
	if err != nil {
		t.Fatalf("UpdateThread: %v", err)
	}
	wantErr(t, st.DeleteThread(t.Context(), "user-2", th.ID), agentstream.ErrNotFound, "DeleteThread by another user")
	if err := st.DeleteThread(t.Context(), "user-1", th.ID); err != nil {
		t.Fatalf("DeleteThread: %v", err)
	}
	_, err = st.GetThread(t.Context(), "user-1", th.ID)
	wantErr(t, err, agentstream.ErrNotFound, "GetThread of a deleted thread")
	for _, r := range []agentstream.Run{run1, run2} {
		_, err = st.GetRun(t.Context(), "user-1", r.ID)
		wantErr(t, err, agentstream.ErrNotFound, "GetRun of a deleted thread's run")
		err = st.CheckpointRun(t.Context(), r.ID, nil)
		wantErr(t, err, agentstream.ErrNotFound, "CheckpointRun of a deleted thread's run")
	}
	checkMessages(t, st, th.ID)
	if runs, err := st.ListRuns(t.Context(), th.ID, nil, 10); err != nil || len(runs) != 0 {
		t.Errorf("ListRuns of a deleted thread: %d runs, %v; want none", len(runs), err)
	}
	if threads, err := st.ListThreads(t.Context(), "user-1", nil, 10); err != nil || !slices.Equal(threadIDs(threads), []string{other.ID}) {
		t.Errorf("ListThreads after delete: %v, %v; want [%s]", threadIDs(threads), err, other.ID)
	}
	wantErr(t, st.DeleteThread(t.Context(), "user-1", th.ID), agentstream.ErrNotFound, "DeleteThread again")
	_, err = st.UpdateThread(t.Context(), "user-1", th.ID, agentstream.ThreadUpdate{Title: ptr("x"), UpdatedAt: at(32)})
	wantErr(t, err, agentstream.ErrNotFound, "UpdateThread of a deleted thread")

	// The other thread is untouched.
	checkRun(t, getRun(t, st, otherRun), otherRun)
	checkMessages(t, st, other.ID, otherIn)

	// The ID again: a new, empty thread whose messages start at Seq 1.
	again := newThread("user-1")
	again.ID, again.CreatedAt = th.ID, at(40)
	if err := st.CreateThread(t.Context(), again); err != nil {
		t.Fatalf("CreateThread with a deleted thread's ID: %v", err)
	}
	checkMessages(t, st, th.ID)
	_, in := createRun(t, st, again, at(41))
	if in.Seq != 1 {
		t.Errorf("first message of the new thread: Seq %d, want 1", in.Seq)
	}
}

// testDeleteThreadActiveRun: a thread with a queued or running run is not
// deleted (ErrConflict) and loses nothing; once the run ended it is.
func (s suite) testDeleteThreadActiveRun(t *testing.T) {
	st := s.open(t)
	for _, status := range []agentstream.RunStatus{agentstream.RunQueued, agentstream.RunRunning} {
		th := createThread(t, st, "user-1")
		run, in := createRun(t, st, th, at(10))
		if status == agentstream.RunRunning {
			run = startRun(t, st, run, at(11))
		}
		wantErr(t, st.DeleteThread(t.Context(), "user-1", th.ID), agentstream.ErrConflict, "DeleteThread with a "+string(status)+" run")
		got, err := st.GetThread(t.Context(), "user-1", th.ID)
		if err != nil {
			t.Fatalf("GetThread: %v", err)
		}
		want := th
		want.UpdatedAt = at(10)
		checkThread(t, got, want)
		checkRun(t, getRun(t, st, run), run)
		checkMessages(t, st, th.ID, in)

		if err := st.FinishRun(t.Context(), finished(run, agentstream.RunCancelled,
			&agentstream.ErrorInfo{Code: agentstream.CodeCancelled, Message: "cancelled"}, agentstream.Usage{}, at(12)), nil); err != nil {
			t.Fatalf("FinishRun: %v", err)
		}
		if err := st.DeleteThread(t.Context(), "user-1", th.ID); err != nil {
			t.Fatalf("DeleteThread once the run ended: %v", err)
		}
		_, err = st.GetRun(t.Context(), "user-1", run.ID)
		wantErr(t, err, agentstream.ErrNotFound, "GetRun after delete")
	}
}

// testListRuns: a thread's runs newest first, by CreatedAt then ID, in
// pages; other threads' runs do not show.
func (s suite) testListRuns(t *testing.T) {
	st := s.open(t)
	th := createThread(t, st, "user-1")
	other := createThread(t, st, "user-1")
	var want []agentstream.Run
	for i, sec := range []int{10, 20, 20, 20, 5, 30} {
		run, _ := newRun(th, at(sec))
		run.Context = map[string]any{"i": float64(i)}
		if _, err := st.CreateRun(t.Context(), run, newInput(run, at(sec))); err != nil {
			t.Fatalf("CreateRun: %v", err)
		}
		run = finished(run, agentstream.RunCompleted, nil, agentstream.Usage{InputTokens: int64(i), OutputTokens: 1}, at(sec+1))
		run.EndSeq = int64(i + 3)
		if err := st.FinishRun(t.Context(), run, nil); err != nil {
			t.Fatalf("FinishRun: %v", err)
		}
		want = append(want, run)
		createRun(t, st, other, at(100+i)) // finished by the next one below
		otherRuns, err := st.ListRuns(t.Context(), other.ID, nil, 1)
		if err != nil || len(otherRuns) != 1 {
			t.Fatalf("ListRuns of the other thread: %d runs, %v", len(otherRuns), err)
		}
		if err := st.FinishRun(t.Context(), finished(otherRuns[0], agentstream.RunCompleted, nil, agentstream.Usage{}, at(101+i)), nil); err != nil {
			t.Fatalf("FinishRun: %v", err)
		}
	}
	slices.SortFunc(want, func(a, b agentstream.Run) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return -compareStrings(a.ID, b.ID)
	})
	for _, limit := range []int{1, 4, 100} {
		var got []agentstream.Run
		var after *agentstream.ListPosition
		for range 100 {
			page, err := st.ListRuns(t.Context(), th.ID, after, limit)
			if err != nil {
				t.Fatalf("ListRuns: %v", err)
			}
			if len(page) > limit {
				t.Fatalf("ListRuns: %d runs, over the limit %d", len(page), limit)
			}
			if len(page) == 0 {
				break
			}
			got = append(got, page...)
			last := page[len(page)-1]
			after = &agentstream.ListPosition{CreatedAt: last.CreatedAt, ID: last.ID}
		}
		if len(got) != len(want) {
			t.Fatalf("limit %d: %d runs, want %d", limit, len(got), len(want))
		}
		for i := range want {
			checkRun(t, got[i], want[i])
		}
	}
	if runs, err := st.ListRuns(t.Context(), agentstream.NewID("thr_"), nil, 10); err != nil || len(runs) != 0 {
		t.Errorf("ListRuns of a missing thread: %d runs, %v; want none", len(runs), err)
	}
}

// newInput returns the user input of a run made by hand.
func newInput(run agentstream.Run, created time.Time) agentstream.Message {
	return agentstream.Message{ID: agentstream.NewID("msg_"), Role: agentstream.RoleUser,
		Content: "input of " + run.ID, Status: agentstream.MessageComplete, CreatedAt: created}
}

// testListMessagesAfter: pages of ListMessages, by Seq.
func (s suite) testListMessagesAfter(t *testing.T) {
	st := s.open(t)
	th := createThread(t, st, "user-1")
	run, in := runningRun(t, st, th, at(10))
	want := []agentstream.Message{in}
	var batch []agentstream.Message
	for i := range 11 {
		m := assistant(run, fmt.Sprintf("message %d", i), agentstream.MessageComplete, at(11+i))
		batch = append(batch, m)
		want = append(want, withSeq(m, int64(i+2)))
	}
	if err := st.CheckpointRun(t.Context(), run.ID, batch); err != nil {
		t.Fatalf("CheckpointRun: %v", err)
	}
	other := createThread(t, st, "user-1")
	createRun(t, st, other, at(30))
	for _, limit := range []int{1, 5, 12, 50} {
		var got []agentstream.Message
		var after int64
		for range 100 {
			page, err := st.ListMessagesAfter(t.Context(), th.ID, after, limit)
			if err != nil {
				t.Fatalf("ListMessagesAfter: %v", err)
			}
			if len(page) > limit {
				t.Fatalf("ListMessagesAfter: %d messages, over the limit %d", len(page), limit)
			}
			if len(page) == 0 {
				break
			}
			got = append(got, page...)
			after = page[len(page)-1].Seq
		}
		if len(got) != len(want) {
			t.Fatalf("limit %d: %d messages %s, want %d %s", limit, len(got), seqs(got), len(want), seqs(want))
		}
		for i := range want {
			checkMessage(t, got[i], want[i])
		}
	}
	got, err := st.ListMessagesAfter(t.Context(), th.ID, 5, 2)
	if err != nil || len(got) != 2 || got[0].Seq != 6 || got[1].Seq != 7 {
		t.Errorf("ListMessagesAfter(5, 2): %s, %v; want seqs 6 and 7", seqs(got), err)
	}
	for _, id := range []string{agentstream.NewID("thr_"), "bad\x00id"} {
		if got, err := st.ListMessagesAfter(t.Context(), id, 0, 10); err != nil || len(got) != 0 {
			t.Errorf("ListMessagesAfter of thread %q: %s, %v; want none", id, seqs(got), err)
		}
	}
}
