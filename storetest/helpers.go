package storetest

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
)

// base is the suite's clock: a time with nanoseconds (so that stores must
// truncate to the microsecond) in a zone other than UTC (so that stores must
// keep the instant, not the wall clock).
var base = time.Date(2025, 3, 14, 15, 9, 26, 535897932, time.FixedZone("UTC+05:30", 5*3600+1800))

// at returns the suite's time plus i seconds.
func at(i int) time.Time { return base.Add(time.Duration(i) * time.Second) }

func ptr[T any](v T) *T { return &v }

// open returns a fresh store from newStore, closed when t ends.
func (s suite) open(t testing.TB) agentstream.Store {
	t.Helper()
	st := s.newStore(t)
	if st == nil {
		t.Fatal("newStore returned nil")
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return st
}

// newThread returns an unsaved thread of user.
func newThread(user string) agentstream.Thread {
	return agentstream.Thread{
		ID:        agentstream.NewID("thr_"),
		UserID:    user,
		Agent:     "helper",
		Title:     "A thread",
		CreatedAt: at(0),
		UpdatedAt: at(0),
	}
}

// createThread saves a new thread of user.
func createThread(t testing.TB, st agentstream.Store, user string) agentstream.Thread {
	t.Helper()
	th := newThread(user)
	if err := st.CreateThread(t.Context(), th); err != nil {
		t.Fatalf("CreateThread: %v", err)
	}
	return th
}

// newRun returns an unsaved queued run on th created at created, and its
// user input message.
func newRun(th agentstream.Thread, created time.Time) (agentstream.Run, agentstream.Message) {
	run := agentstream.Run{
		ID:        agentstream.NewID("run_"),
		ThreadID:  th.ID,
		UserID:    th.UserID,
		Agent:     th.Agent,
		Status:    agentstream.RunQueued,
		CreatedAt: created,
	}
	in := agentstream.Message{
		ID:        agentstream.NewID("msg_"),
		ThreadID:  th.ID,
		RunID:     run.ID,
		Role:      agentstream.RoleUser,
		Content:   "Hello from " + run.ID,
		Status:    agentstream.MessageComplete,
		CreatedAt: created,
	}
	return run, in
}

// createRun saves a new queued run on th and returns it with its input
// message as stored.
func createRun(t testing.TB, st agentstream.Store, th agentstream.Thread, created time.Time) (agentstream.Run, agentstream.Message) {
	t.Helper()
	run, in := newRun(th, created)
	got, err := st.CreateRun(t.Context(), run, in)
	if err != nil {
		t.Fatalf("CreateRun: %v", err)
	}
	return run, got
}

// startRun starts run at when and returns it as stored.
func startRun(t testing.TB, st agentstream.Store, run agentstream.Run, when time.Time) agentstream.Run {
	t.Helper()
	if err := st.StartRun(t.Context(), run.ID, when); err != nil {
		t.Fatalf("StartRun: %v", err)
	}
	run.Status, run.StartedAt = agentstream.RunRunning, &when
	return run
}

// runningRun creates and starts a run on th.
func runningRun(t testing.TB, st agentstream.Store, th agentstream.Thread, created time.Time) (agentstream.Run, agentstream.Message) {
	t.Helper()
	run, in := createRun(t, st, th, created)
	return startRun(t, st, run, created.Add(time.Millisecond)), in
}

// finished returns run as FinishRun should store it.
func finished(run agentstream.Run, status agentstream.RunStatus, e *agentstream.ErrorInfo, u agentstream.Usage, when time.Time) agentstream.Run {
	run.Status, run.Error, run.Usage, run.FinishedAt = status, e, u, &when
	run.Owner, run.LeaseUntil = "", nil
	return run
}

// assistant returns a new message of run.
func assistant(run agentstream.Run, content string, status agentstream.MessageStatus, created time.Time, calls ...agentstream.ToolCall) agentstream.Message {
	return agentstream.Message{
		ID:        agentstream.NewID("msg_"),
		ThreadID:  run.ThreadID,
		RunID:     run.ID,
		Role:      agentstream.RoleAssistant,
		Content:   content,
		ToolCalls: calls,
		Status:    status,
		CreatedAt: created,
	}
}

// toolResult returns a new tool message of run answering call.
func toolResult(run agentstream.Run, call agentstream.ToolCall, output string, created time.Time) agentstream.Message {
	return agentstream.Message{
		ID:         agentstream.NewID("msg_"),
		ThreadID:   run.ThreadID,
		RunID:      run.ID,
		Role:       agentstream.RoleTool,
		Content:    output,
		ToolCallID: call.ID,
		ToolName:   call.Name,
		Status:     agentstream.MessageComplete,
		CreatedAt:  created,
	}
}

// withSeq returns m with Seq set.
func withSeq(m agentstream.Message, seq int64) agentstream.Message {
	m.Seq = seq
	return m
}

// wantErr fails t unless errors.Is(err, target).
func wantErr(t testing.TB, err, target error, what string) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: error %v, want %v", what, err, target)
	}
}

// The normalisations below encode the suite's storage contract: times are
// kept to the microsecond (a time reads back as the time written truncated
// to the microsecond; its location is not compared), and a map or slice
// with no entries reads back nil. They apply whole to expected values;
// values read from the store only get their times normalised, so a store
// that returns an empty non-nil map fails.

func normTime(x time.Time) time.Time { return time.UnixMicro(x.UnixMicro()).UTC() }

func normTimePtr(x *time.Time) *time.Time {
	if x == nil {
		return nil
	}
	return ptr(normTime(*x))
}

func normMap(m map[string]any) map[string]any {
	if len(m) == 0 {
		return nil
	}
	return m
}

func gotThreadTimes(th agentstream.Thread) agentstream.Thread {
	th.CreatedAt, th.UpdatedAt = normTime(th.CreatedAt), normTime(th.UpdatedAt)
	return th
}

func gotRunTimes(r agentstream.Run) agentstream.Run {
	r.CreatedAt = normTime(r.CreatedAt)
	r.StartedAt, r.FinishedAt, r.LeaseUntil = normTimePtr(r.StartedAt), normTimePtr(r.FinishedAt), normTimePtr(r.LeaseUntil)
	return r
}

func gotMessageTimes(m agentstream.Message) agentstream.Message {
	m.CreatedAt = normTime(m.CreatedAt)
	return m
}

func checkThread(t testing.TB, got, want agentstream.Thread) {
	t.Helper()
	want = gotThreadTimes(want)
	want.Metadata, want.Context = normMap(want.Metadata), normMap(want.Context)
	if d := diff(gotThreadTimes(got), want); d != "" {
		t.Errorf("thread %s differs:%s", want.ID, d)
	}
}

func checkRun(t testing.TB, got, want agentstream.Run) {
	t.Helper()
	want = gotRunTimes(want)
	want.Context = normMap(want.Context)
	if d := diff(gotRunTimes(got), want); d != "" {
		t.Errorf("run %s differs:%s", want.ID, d)
	}
}

func checkMessage(t testing.TB, got, want agentstream.Message) {
	t.Helper()
	want = gotMessageTimes(want)
	if len(want.ToolCalls) == 0 {
		want.ToolCalls = nil
	}
	if d := diff(gotMessageTimes(got), want); d != "" {
		t.Errorf("message %s (seq %d) differs:%s", want.ID, want.Seq, d)
	}
}

// checkMessages compares the thread's stored messages with want.
func checkMessages(t testing.TB, st agentstream.Store, threadID string, want ...agentstream.Message) {
	t.Helper()
	got, err := st.ListMessages(t.Context(), threadID)
	if err != nil {
		t.Fatalf("ListMessages: %v", err)
	}
	if len(got) != len(want) {
		t.Fatalf("ListMessages: %d messages %s, want %d %s", len(got), seqs(got), len(want), seqs(want))
	}
	for i := range want {
		checkMessage(t, got[i], want[i])
	}
}

func seqs(msgs []agentstream.Message) string {
	var b strings.Builder
	b.WriteString("[")
	for i, m := range msgs {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%d:%s", m.Seq, m.ID)
	}
	b.WriteString("]")
	return b.String()
}

// diff lists the fields of two structs of the same type that differ.
func diff(got, want any) string {
	gv, wv := reflect.ValueOf(got), reflect.ValueOf(want)
	var b strings.Builder
	for i := range gv.NumField() {
		g, w := gv.Field(i).Interface(), wv.Field(i).Interface()
		if !reflect.DeepEqual(g, w) {
			fmt.Fprintf(&b, "\n\t%s: got %s, want %s", gv.Type().Field(i).Name, show(g), show(w))
		}
	}
	return b.String()
}

func show(v any) string {
	if tm, ok := v.(time.Time); ok {
		return tm.Format(time.RFC3339Nano)
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Slice:
		if rv.IsNil() {
			return "nil"
		}
		if rv.Kind() == reflect.Pointer {
			return "&" + show(rv.Elem().Interface())
		}
	}
	return fmt.Sprintf("%#v", v)
}

// Seed creates a thread of user "u" and a run on it with the given status,
// for the tests of one implementation.
func Seed(t testing.TB, s agentstream.Store, status agentstream.RunStatus) (agentstream.Thread, agentstream.Run) {
	t.Helper()
	now := time.Now()
	th := agentstream.Thread{ID: agentstream.NewID("thr_"), UserID: "u", Agent: "a", CreatedAt: now, UpdatedAt: now}
	if err := s.CreateThread(t.Context(), th); err != nil {
		t.Fatal(err)
	}
	run := agentstream.Run{ID: agentstream.NewID("run_"), ThreadID: th.ID, UserID: "u", Agent: "a", Status: status, CreatedAt: now}
	in := agentstream.Message{ID: agentstream.NewID("msg_"), Role: agentstream.RoleUser, Content: "hi", Status: agentstream.MessageComplete, CreatedAt: now}
	if _, err := s.CreateRun(t.Context(), run, in); err != nil {
		t.Fatal(err)
	}
	return th, run
}
