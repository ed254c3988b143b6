package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/agent"
	"github.com/agentstream/agentstream/internal/sse"
	"github.com/agentstream/agentstream/memlog"
	"github.com/agentstream/agentstream/sqlite"
)

// idleModel is never called: these tests put runs in the store and the
// log themselves, as another instance would.
type idleModel struct{}

func (idleModel) Stream(context.Context, agentstream.ModelRequest, func(agentstream.ModelDelta)) (agentstream.ModelResult, error) {
	return agentstream.ModelResult{}, errors.New("not used")
}

type fixture struct {
	t     *testing.T
	store *sqlite.Store
	log   *memlog.Log
	srv   *Server
	url   string
}

func newFixture(t *testing.T, opts Options) *fixture {
	t.Helper()
	return newFixtureOn(t, opts, nil)
}

// newFixtureOn is newFixture with the runner and the server using
// wrap(store) when wrap is not nil.
func newFixtureOn(t *testing.T, opts Options, wrap func(agentstream.Store) agentstream.Store) *fixture {
	t.Helper()
	return newFixtureWith(t, opts, wrap, idleModel{})
}

// newFixtureWith is newFixtureOn with the runner calling model.
func newFixtureWith(t *testing.T, opts Options, wrap func(agentstream.Store) agentstream.Store, model agentstream.Model) *fixture {
	t.Helper()
	store, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	var used agentstream.Store = store
	if wrap != nil {
		used = wrap(store)
	}
	log := memlog.New(memlog.Options{})
	runner, err := agent.New(agent.Config{DefaultModel: "m"}, agent.Deps{
		Store: used, Log: log, Model: model,
		Agents: []agentstream.Agent{{Name: "assistant", Instructions: "x"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := New(runner, used, log, opts)
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return &fixture{t: t, store: store, log: log, srv: srv, url: hs.URL}
}

// runningElsewhere stores a running run with a question, as an instance
// that runs it would, and appends its first events to the log.
func (f *fixture) runningElsewhere() (agentstream.Run, agentstream.Message) {
	f.t.Helper()
	ctx := f.t.Context()
	now := time.Now().UTC()
	th := agentstream.Thread{ID: agentstream.NewID("thr_"), UserID: LocalUser, Agent: "assistant", CreatedAt: now, UpdatedAt: now}
	if err := f.store.CreateThread(ctx, th); err != nil {
		f.t.Fatal(err)
	}
	run := agentstream.Run{ID: agentstream.NewID("run_"), ThreadID: th.ID, UserID: LocalUser, Agent: "assistant",
		Status: agentstream.RunQueued, CreatedAt: now}
	in := agentstream.Message{ID: agentstream.NewID("msg_"), ThreadID: th.ID, RunID: run.ID, Role: agentstream.RoleUser,
		Content: "hi", Status: agentstream.MessageComplete, CreatedAt: now}
	if _, err := f.store.CreateRun(ctx, run, in); err != nil {
		f.t.Fatal(err)
	}
	if err := f.store.StartRun(ctx, run.ID, now); err != nil {
		f.t.Fatal(err)
	}
	run.Status, run.StartedAt = agentstream.RunRunning, &now
	answer := agentstream.Message{ID: agentstream.NewID("msg_"), ThreadID: th.ID, RunID: run.ID, Role: agentstream.RoleAssistant,
		Content: "half", Status: agentstream.MessagePartial, CreatedAt: now}
	if _, err := f.log.Append(ctx, run.ID,
		agentstream.NewEvent(agentstream.EventRunCreated, agentstream.RunCreatedData{RunID: run.ID, ThreadID: th.ID}),
		agentstream.NewEvent(agentstream.EventRunStarted, agentstream.RunStartedData{RunID: run.ID}),
		agentstream.NewEvent(agentstream.EventMessageDelta, agentstream.MessageDeltaData{MessageID: answer.ID, Delta: "half"}),
	); err != nil {
		f.t.Fatal(err)
	}
	return run, answer
}

// TestLostTerminalEvent: a run that ended in the store without its
// terminal event reaching the log (its instance died between the two, or
// Redis lost the event) still ends every stream, from the store, after two
// silent heartbeats; a run still going only gets heartbeats.
func TestLostTerminalEvent(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{Heartbeat: 50 * time.Millisecond})
	run, answer := f.runningElsewhere()
	going, _ := f.runningElsewhere()

	// The run ends in the store; its log never hears of it.
	now := time.Now().UTC()
	ended := run
	ended.Status, ended.FinishedAt = agentstream.RunInterrupted, &now
	ended.Error = &agentstream.ErrorInfo{Code: agentstream.CodeInterrupted, Message: "gone"}
	if err := f.store.FinishRun(t.Context(), ended, []agentstream.Message{answer}); err != nil {
		t.Fatal(err)
	}
	readAll := func(header string) (int, []sse.Event) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, f.url+"/v1/runs/"+run.ID+"/events", nil)
		if header != "" {
			req.Header.Set("Last-Event-ID", header)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		var evs []sse.Event
		r := sse.NewReader(resp.Body)
		for {
			ev, err := r.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			evs = append(evs, ev)
		}
		return resp.StatusCode, evs
	}
	// The rebuilt end: the answer without an id of its own (an EventSource
	// keeps the last one, 3), then the terminal event right after the last
	// event the log holds.
	_, evs := readAll("")
	if len(evs) != 5 || evs[3].Type != string(agentstream.EventMessageCompleted) || evs[3].ID != "3" ||
		evs[4].Type != string(agentstream.EventRunInterrupted) || evs[4].ID != "4" {
		t.Fatalf("stream of a run whose end was lost: %+v", evs)
	}
	// That id is the run's, not the reader's: recorded, it is every
	// reader's, and a reader at it gets 204.
	if stored, err := f.store.GetRun(t.Context(), LocalUser, run.ID); err != nil || stored.EndSeq != 4 {
		t.Fatalf("stored end seq: %+v, %v; want 4", stored, err)
	}
	if status, evs := readAll("1"); status != http.StatusOK || len(evs) < 2 || evs[len(evs)-1].ID != "4" {
		t.Fatalf("reader after 1: %d %+v; want the end at id 4", status, evs)
	}
	for _, pos := range []string{"4", "9"} {
		if status, evs := readAll(pos); status != http.StatusNoContent || len(evs) != 0 {
			t.Fatalf("reader at %s, at or past the end: %d %+v; want 204", pos, status, evs)
		}
	}

	// The seed format ends the same way, from the store, without a
	// heartbeat in its silences: the delta after 2, the run's error, then
	// done, once.
	req, _ := http.NewRequest(http.MethodGet, f.url+"/v1/runs/"+run.ID+"/events?format=seed", nil)
	req.Header.Set("Last-Event-ID", "2")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	want := `data: {"delta":"half","complete":false}` + "\n\n" +
		`data: {"error":"gone","code":"interrupted","thread_id":"` + run.ThreadID + `","run_id":"` + run.ID + `"}` + "\n\n" +
		`data: {"status":"done"}` + "\n\n"
	if string(seed) != want {
		t.Fatalf("seed stream of a run whose end was lost:\n%q\nwant\n%q", seed, want)
	}

	// The run still going: heartbeats only, for many intervals.
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	req, _ = http.NewRequestWithContext(ctx, http.MethodGet, f.url+"/v1/runs/"+going.ID+"/events?after=3", nil)
	resp2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp2.Body.Close() }()
	body, _ := io.ReadAll(resp2.Body) // ends at the deadline
	if got := string(body); len(got) < len(": ok\n\n: heartbeat\n\n: heartbeat\n\n") || strings.Contains(got, "event:") {
		t.Fatalf("stream of a running run: %q", got)
	}
}

// TestRemoteCancel: cancelling a run that runs on another instance asks
// the others (RemoteCancel) and answers with the ended run; when nobody
// ends it in time, 503 saying so (never the run still running).
func TestRemoteCancel(t *testing.T) {
	t.Parallel()
	var (
		mu    sync.Mutex
		asked []string
	)
	var f *fixture
	f = newFixture(t, Options{RemoteCancel: func(ctx context.Context, runID string) error {
		mu.Lock()
		asked = append(asked, runID)
		n := len(asked)
		mu.Unlock()
		if n == 1 {
			// The first time, the owner cancels it, as another instance would.
			go func() {
				run, err := f.store.GetRun(context.Background(), LocalUser, runID)
				if err != nil {
					t.Error(err)
					return
				}
				now := time.Now().UTC()
				run.Status, run.FinishedAt = agentstream.RunCancelled, &now
				run.Error = &agentstream.ErrorInfo{Code: agentstream.CodeCancelled, Message: "the run was cancelled"}
				if err := f.store.FinishRun(context.Background(), run, nil); err != nil {
					t.Error(err)
				}
				_, _ = f.log.Append(context.Background(), runID, agentstream.NewEvent(agentstream.EventRunCancelled,
					agentstream.RunEndData{RunID: runID, Status: run.Status, Error: run.Error}))
			}()
		}
		return nil
	}})
	f.srv.cancelWait = 300 * time.Millisecond

	first, _ := f.runningElsewhere()
	resp, err := http.Post(f.url+"/v1/runs/"+first.ID+"/cancel", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("cancel of a run another instance ends: status %d", resp.StatusCode)
	}
	second, _ := f.runningElsewhere()
	resp, err = http.Post(f.url+"/v1/runs/"+second.ID+"/cancel", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	if e := readError(t, resp); resp.StatusCode != http.StatusServiceUnavailable || e.Code != agentstream.CodeUnavailable ||
		!strings.Contains(e.Message, "has not ended") {
		t.Fatalf("cancel of a run nobody ends: status %d %+v, want 503 saying it has not ended", resp.StatusCode, e)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(asked) != 2 || asked[0] != first.ID || asked[1] != second.ID {
		t.Fatalf("RemoteCancel asked for %v", asked)
	}
}

// downStore is a store whose database cannot be reached.
type downStore struct{ agentstream.Store }

func (downStore) Ping(context.Context) error {
	return agentstream.Errorf(agentstream.CodeUnavailable, "connection refused")
}

// TestReadyzStoreDown: /readyz is 503 when the store cannot be reached, so
// a load balancer stops sending requests; /healthz stays 200 (the process
// is alive).
func TestReadyzStoreDown(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{})
	down := New(f.srv.runner, downStore{f.store}, f.log, Options{})
	hs := httptest.NewServer(down.Handler())
	t.Cleanup(hs.Close)
	for path, want := range map[string]int{"/readyz": http.StatusServiceUnavailable, "/healthz": http.StatusOK} {
		resp, err := http.Get(hs.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s: %d, want %d", path, resp.StatusCode, want)
		}
	}
	resp, err := http.Get(f.url + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/readyz with the store up: %d", resp.StatusCode)
	}
}

// readError decodes an error answer and closes its body.
func readError(t testing.TB, resp *http.Response) agentstream.ErrorInfo {
	t.Helper()
	defer func() { _ = resp.Body.Close() }()
	var body errorBody
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("error body: %v", err)
	}
	return body.Error
}
