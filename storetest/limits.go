package storetest

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
)

// testUsageAddsUp: AddUsage adds to the user's count of the UTC day that
// holds the time given; Usage reads it; users and days are apart.
func (s suite) testUsageAddsUp(t *testing.T) {
	st := s.open(t)
	ctx := t.Context()
	day := time.Date(2026, 3, 4, 23, 59, 59, 0, time.UTC)
	if n, err := st.Usage(ctx, "user-1", day); err != nil || n != 0 {
		t.Fatalf("Usage of a day without any: %d, %v; want 0, nil", n, err)
	}
	for _, add := range []int64{10, 5} {
		if err := st.AddUsage(ctx, "user-1", day, add); err != nil {
			t.Fatalf("AddUsage: %v", err)
		}
	}
	// 01:00 on the 5th at UTC+2 is 23:00 on the 4th, UTC.
	east := time.FixedZone("UTC+2", 2*3600)
	if err := st.AddUsage(ctx, "user-1", time.Date(2026, 3, 5, 1, 0, 0, 0, east), 100); err != nil {
		t.Fatalf("AddUsage: %v", err)
	}
	if err := st.AddUsage(ctx, "user-2", day, 7); err != nil {
		t.Fatalf("AddUsage: %v", err)
	}
	if err := st.AddUsage(ctx, "user-1", day.Add(2*time.Second), 1000); err != nil { // the 5th
		t.Fatalf("AddUsage: %v", err)
	}
	for _, c := range []struct {
		user string
		at   time.Time
		want int64
	}{
		{"user-1", day, 115},
		{"user-1", time.Date(2026, 3, 4, 0, 0, 0, 0, time.UTC), 115},
		{"user-1", time.Date(2026, 3, 5, 0, 0, 0, 0, time.UTC), 1000},
		{"user-1", time.Date(2026, 3, 3, 12, 0, 0, 0, time.UTC), 0},
		{"user-2", day, 7},
		{"user-3", day, 0},
	} {
		if n, err := st.Usage(ctx, c.user, c.at); err != nil || n != c.want {
			t.Errorf("Usage(%s, %s) = %d, %v; want %d", c.user, c.at, n, err, c.want)
		}
	}
}

// testUsageRefused: AddUsage of nothing or less is ErrInvalid, and adds
// nothing.
func (s suite) testUsageRefused(t *testing.T) {
	st := s.open(t)
	ctx := t.Context()
	for _, n := range []int64{0, -5} {
		wantErr(t, st.AddUsage(ctx, "user-1", at(0), n), agentstream.ErrInvalid, "AddUsage of a count not positive")
	}
	wantErr(t, st.AddUsage(ctx, "user\x00", at(0), 1), agentstream.ErrInvalid, "AddUsage of a user no store can hold")
	if n, err := st.Usage(ctx, "user-1", at(0)); err != nil || n != 0 {
		t.Fatalf("Usage after refused adds: %d, %v; want 0", n, err)
	}
}

// testUsageConcurrent: adds made at once all count.
func (s suite) testUsageConcurrent(t *testing.T) {
	st := s.open(t)
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if err := st.AddUsage(t.Context(), "user-1", at(0), 3); err != nil {
				t.Errorf("AddUsage: %v", err)
			}
		})
	}
	wg.Wait()
	if n, err := st.Usage(t.Context(), "user-1", at(0)); err != nil || n != 60 {
		t.Fatalf("Usage = %d, %v; want 60", n, err)
	}
}

// testRunLimits: CreateRunLimited refuses a run past the user's active or
// queued runs, writing nothing, and counts only the user's queued and
// running runs.
func (s suite) testRunLimits(t *testing.T) {
	st := s.open(t)
	ctx := t.Context()
	lim := agentstream.RunLimits{Active: 2, Queued: 1}
	create := func(user string, status agentstream.RunStatus) (agentstream.Run, error) {
		t.Helper()
		th := createThread(t, st, user)
		run, in := newRun(th, at(1))
		if status == agentstream.RunRunning {
			run.Status, run.StartedAt = status, ptr(at(1))
		}
		_, err := st.CreateRunLimited(ctx, run, lim, in)
		return run, err
	}
	queued, err := create("user-1", agentstream.RunQueued)
	if err != nil {
		t.Fatalf("first queued run: %v", err)
	}
	// A second queued run is one past Queued.
	refused, err := create("user-1", agentstream.RunQueued)
	wantErr(t, err, agentstream.ErrTooManyQueued, "a queued run past lim.Queued")
	if _, err := st.GetRun(ctx, "user-1", refused.ID); !errors.Is(err, agentstream.ErrNotFound) {
		t.Fatalf("the refused run was written: %v", err)
	}
	if msgs, err := st.ListMessages(ctx, refused.ThreadID); err != nil || len(msgs) != 0 {
		t.Fatalf("the refused run's input was written: %v, %v", msgs, err)
	}
	// A running one is not queued: it fits under Active.
	if _, err := create("user-1", agentstream.RunRunning); err != nil {
		t.Fatalf("a running run within lim.Active: %v", err)
	}
	_, err = create("user-1", agentstream.RunRunning)
	wantErr(t, err, agentstream.ErrTooManyRuns, "a run past lim.Active")
	// Another user's runs are theirs.
	if _, err := create("user-2", agentstream.RunQueued); err != nil {
		t.Fatalf("another user's run: %v", err)
	}
	// Without limits, nothing is counted.
	th := createThread(t, st, "user-1")
	free, in := newRun(th, at(1))
	if _, err := st.CreateRunLimited(ctx, free, agentstream.RunLimits{}, in); err != nil {
		t.Fatalf("a run without limits: %v", err)
	}
	if err := st.FinishRun(ctx, finished(free, agentstream.RunCompleted, nil, agentstream.Usage{}, at(2)), nil); err != nil {
		t.Fatal(err)
	}
	// An ended run frees its place.
	if err := st.FinishRun(ctx, finished(queued, agentstream.RunCancelled, nil, agentstream.Usage{}, at(2)), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := create("user-1", agentstream.RunQueued); err != nil {
		t.Fatalf("a run after one ended: %v", err)
	}
}

// testRunLimitsConcurrent: of runs created at once past the limit, exactly
// as many as it allows are created.
func (s suite) testRunLimitsConcurrent(t *testing.T) {
	st := s.open(t)
	const limit, tries = 3, 12
	threads := make([]agentstream.Thread, tries)
	for i := range threads {
		threads[i] = createThread(t, st, "user-1")
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	created := 0
	for i := range tries {
		wg.Go(func() {
			run, in := newRun(threads[i], at(1))
			_, err := st.CreateRunLimited(t.Context(), run, agentstream.RunLimits{Active: limit}, in)
			switch {
			case err == nil:
				mu.Lock()
				created++
				mu.Unlock()
			case !errors.Is(err, agentstream.ErrTooManyRuns):
				t.Errorf("CreateRunLimited: %v", err)
			}
		})
	}
	wg.Wait()
	if created != limit {
		t.Fatalf("%d runs created at once under a limit of %d", created, limit)
	}
}
