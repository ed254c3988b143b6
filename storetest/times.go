package storetest

import (
	"testing"
	"time"

	"github.com/agentstream/agentstream"
)

func (s suite) testTimesUTC(t *testing.T) { CheckTimes(t, s.open(t)) }

// CheckTimes checks that times come back in UTC, truncated (not rounded)
// to the microsecond, whatever zone they were given in. A store whose
// connection can be set to another time zone runs it on such a store too.
func CheckTimes(t testing.TB, st agentstream.Store) {
	t.Helper()
	th, run := Seed(t, st, agentstream.RunQueued)
	start := time.Date(2025, 1, 2, 3, 4, 5, 999_999_999, time.FixedZone("X", -7*3600))
	if err := st.StartRun(t.Context(), run.ID, start); err != nil {
		t.Fatal(err)
	}
	gotTh, err := st.GetThread(t.Context(), "u", th.ID)
	if err != nil {
		t.Fatal(err)
	}
	gotRun, err := st.GetRun(t.Context(), "u", run.ID)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := st.ListMessages(t.Context(), th.ID)
	if err != nil {
		t.Fatal(err)
	}
	for what, tm := range map[string]time.Time{
		"thread CreatedAt": gotTh.CreatedAt, "thread UpdatedAt": gotTh.UpdatedAt,
		"run CreatedAt": gotRun.CreatedAt, "run StartedAt": *gotRun.StartedAt,
		"message CreatedAt": msgs[0].CreatedAt,
	} {
		if tm.Location() != time.UTC {
			t.Errorf("%s in %v, want UTC", what, tm.Location())
		}
	}
	if want := start.Truncate(time.Microsecond); !gotRun.StartedAt.Equal(want) {
		t.Errorf("StartedAt = %v, want %v (truncated to the microsecond)", gotRun.StartedAt, want)
	}
}
