package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/config"
	"github.com/agentstream/agentstream/internal/sse"
	"github.com/agentstream/agentstream/sim"
)

// The users of the limits tests: each limit is per user.
const (
	limAda = "ada-key-0123456789abcdef"
	limBob = "bob-key-0123456789abcdef"
)

// withUsers gives the server two users, ada and bob, then applies mod.
func withUsers(mod func(*config.Config)) func(*config.Config) {
	return func(c *config.Config) {
		c.Auth.Keys = []config.APIKey{{Key: limAda, User: "ada"}, {Key: limBob, User: "bob"}}
		// Runs left at the end are interrupted, not waited for.
		c.HTTP.ShutdownTimeout = 100 * time.Millisecond
		if mod != nil {
			mod(c)
		}
	}
}

// threadAs creates a thread of the key's user.
func (e *env) threadAs(key string) agentstream.Thread {
	e.t.Helper()
	resp := e.request("POST", "/v1/threads", `{}`, as(key, nil))
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		e.t.Fatalf("POST /v1/threads: status %d: %s", resp.StatusCode, b)
	}
	var th agentstream.Thread
	if err := json.Unmarshal(b, &th); err != nil {
		e.t.Fatal(err)
	}
	return th
}

// listAs decodes the data of a GET listing of the key's user.
func listAs[T any](e *env, key, path string) []T {
	e.t.Helper()
	resp := e.request("GET", path, "", as(key, nil))
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		e.t.Fatalf("GET %s: status %d: %s", path, resp.StatusCode, b)
	}
	var out struct {
		Data []T `json:"data"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		e.t.Fatal(err)
	}
	return out.Data
}

// runAs starts a run on the thread as the key's user and returns the open
// stream, read up to run.created, and the run's id. The stream closes
// at cleanup.
func (e *env) runAs(key, threadID, input string) (*sse.Reader, string) {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	e.t.Cleanup(cancel)
	r, resp := e.openStream(ctx, "POST", "/v1/threads/"+threadID+"/runs", `{"input": "`+input+`"}`, as(key, nil))
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		e.t.Fatalf("starting a run: status %d: %s", resp.StatusCode, b)
	}
	first := readN(e.t, r, 1)[0]
	var created agentstream.RunCreatedData
	if first.Type != string(agentstream.EventRunCreated) || json.Unmarshal([]byte(first.Data), &created) != nil {
		e.t.Fatalf("first event %+v, want run.created", first)
	}
	return r, created.RunID
}

// wantLimited checks a refusal: 429, the code, Retry-After within
// [minRetry, maxRetry] seconds, and the message.
func wantLimited(t testing.TB, resp *http.Response, code agentstream.Code, message string, minRetry, maxRetry int) {
	t.Helper()
	if resp.StatusCode != http.StatusTooManyRequests {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d (%s), want 429 %s", resp.StatusCode, b, code)
	}
	ra, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	if err != nil || ra < minRetry || ra > maxRetry {
		t.Fatalf("Retry-After %q, want %d to %d seconds", resp.Header.Get("Retry-After"), minRetry, maxRetry)
	}
	e := errorBody(t, resp)
	if e.Code != code || !strings.Contains(e.Message, message) {
		t.Fatalf("error %+v, want code %s and a message with %q", e, code, message)
	}
}

// toMidnight is the seconds from now to the next UTC midnight.
func toMidnight() int {
	now := time.Now().UTC()
	next := time.Date(now.Year(), now.Month(), now.Day()+1, 0, 0, 0, 0, time.UTC)
	return int(next.Sub(now) / time.Second)
}

// TestLimitRequestsPerMinute: past a user's burst, every authenticated
// request is a 429 rate_limited with Retry-After, that writes nothing;
// other users and the health checks are not counted.
func TestLimitRequestsPerMinute(t *testing.T) {
	t.Parallel()
	e := start(t, sim.Options{}, withUsers(func(c *config.Config) {
		c.Limits.RequestsPerMinute, c.Limits.Burst = 60, 2
	}))
	e.threadAs(limAda)
	e.threadAs(limAda)
	resp := e.request("POST", "/v1/threads", `{}`, as(limAda, nil))
	wantLimited(t, resp, agentstream.CodeUserRateLimited, "limits.requests_per_minute (60) reached for this user; retry in 1s", 1, 1)
	// Every route counts, reads too.
	wantLimited(t, e.request("GET", "/v1/agents", "", as(limAda, nil)), agentstream.CodeUserRateLimited, "limits.requests_per_minute (60)", 1, 1)
	for range 5 {
		if s := e.status("GET", "/healthz", nil); s != http.StatusOK {
			t.Fatalf("/healthz: %d: health checks are not limited", s)
		}
	}
	e.threadAs(limBob) // another user's own rate
	time.Sleep(1100 * time.Millisecond)
	if threads := listAs[agentstream.Thread](e, limAda, "/v1/threads"); len(threads) != 2 {
		t.Fatalf("ada has %d threads, want 2: a refused request wrote one", len(threads))
	}
}

// TestLimitConcurrentRuns: a user's run past concurrent_runs is a 429
// too_many_runs that writes nothing (not even the thread of a chat that
// would have made one); another user's runs are theirs, and the place
// frees when a run ends.
func TestLimitConcurrentRuns(t *testing.T) {
	t.Parallel()
	e := start(t, sim.Options{Tokens: 500, Pace: 10 * time.Millisecond}, withUsers(func(c *config.Config) {
		c.Limits.ConcurrentRuns = 1
	}))
	first, other := e.threadAs(limAda), e.threadAs(limAda)
	_, runID := e.runAs(limAda, first.ID, "hi")
	resp := e.request("POST", "/v1/threads/"+other.ID+"/runs", `{"input": "hi"}`, as(limAda, nil))
	wantLimited(t, resp, agentstream.CodeTooManyRuns,
		"limits.concurrent_runs (1) reached for this user: that many runs are queued or running; retry when one ends", 1, 1)
	if msgs := listAs[agentstream.Message](e, limAda, "/v1/threads/"+other.ID+"/messages"); len(msgs) != 0 {
		t.Fatalf("the refused run wrote %d messages", len(msgs))
	}
	// A chat that would make a thread makes none.
	resp = e.request("POST", "/v1/chat", `{"query": "hi"}`, as(limAda, nil))
	wantLimited(t, resp, agentstream.CodeTooManyRuns, "limits.concurrent_runs (1)", 1, 1)
	if threads := listAs[agentstream.Thread](e, limAda, "/v1/threads"); len(threads) != 2 {
		t.Fatalf("ada has %d threads, want 2: the refused chat left its thread", len(threads))
	}
	// Bob runs as he likes.
	bobs := e.threadAs(limBob)
	e.runAs(limBob, bobs.ID, "hi")
	// Once ada's run ends, her next is taken.
	if s := e.status("POST", "/v1/runs/"+runID+"/cancel", as(limAda, nil)); s != http.StatusOK {
		t.Fatalf("cancel: %d", s)
	}
	e.runAs(limAda, other.ID, "hi")
}

// TestLimitQueuedRuns: a user's run that would wait past queued_runs is a
// 429 too_many_queued; one that can run, or another user's, is taken.
func TestLimitQueuedRuns(t *testing.T) {
	t.Parallel()
	e := start(t, sim.Options{Tokens: 500, Pace: 10 * time.Millisecond}, withUsers(func(c *config.Config) {
		c.Runs.MaxConcurrent = 1
		c.Limits.QueuedRuns = 1
	}))
	threads := []agentstream.Thread{e.threadAs(limAda), e.threadAs(limAda), e.threadAs(limAda)}
	e.runAs(limAda, threads[0].ID, "hi") // runs
	queued, _ := e.runAs(limAda, threads[1].ID, "hi")
	if ev := readN(t, queued, 1)[0]; ev.Type != string(agentstream.EventRunQueued) {
		t.Fatalf("second run's event %+v, want run.queued", ev)
	}
	resp := e.request("POST", "/v1/threads/"+threads[2].ID+"/runs", `{"input": "hi"}`, as(limAda, nil))
	wantLimited(t, resp, agentstream.CodeTooManyQueued,
		"limits.queued_runs (1) reached for this user: that many runs wait for a worker; retry when one starts", 1, 1)
	if msgs := listAs[agentstream.Message](e, limAda, "/v1/threads/"+threads[2].ID+"/messages"); len(msgs) != 0 {
		t.Fatalf("the refused run wrote %d messages", len(msgs))
	}
	e.runAs(limBob, e.threadAs(limBob).ID, "hi") // bob's own queue
}

// alwaysTools makes every model call call current_time: a run that goes
// on calling tools until max_turns, one model call per turn.
func alwaysTools(r *sim.Request) sim.Behavior {
	return sim.Behavior{ToolCalls: []sim.ToolCallSpec{{Name: "current_time", Arguments: `{}`}}}
}

// TestLimitDailyTokens: the tokens of a run's first model call use up the
// budget: the run stops before its second call, failed with
// budget_exceeded, its messages so far saved; the user's next run is a
// 429 budget_exceeded until midnight UTC; another user's budget is theirs.
func TestLimitDailyTokens(t *testing.T) {
	t.Parallel()
	e := start(t, sim.Options{Decide: alwaysTools}, withUsers(func(c *config.Config) {
		c.Limits.DailyTokens = 5
	}))
	th := e.threadAs(limAda)
	r, runID := e.runAs(limAda, th.ID, "hi")
	run := checkNative(t, append([]sse.Event{{ID: "1", Type: "run.created", Data: `{"run_id":"` + runID + `"}`}}, readToEnd(t, r)...))
	if run.end.Status != agentstream.RunFailed || run.end.Error == nil || run.end.Error.Code != agentstream.CodeBudgetExceeded ||
		!strings.Contains(run.end.Error.Message, "limits.daily_tokens (5) reached for this user") ||
		!strings.Contains(run.end.Error.Message, "the run stopped before its model call 2") {
		t.Fatalf("run end %+v, want failed with budget_exceeded before call 2", run.end)
	}
	if n := len(e.sim.Requests()); n != 1 {
		t.Fatalf("the model was called %d times, want 1: the run goes no further once the budget is used", n)
	}
	// What it did is saved: the question, the call and its result.
	msgs := listAs[agentstream.Message](e, limAda, "/v1/threads/"+th.ID+"/messages")
	if len(msgs) != 3 || msgs[1].Role != agentstream.RoleAssistant || len(msgs[1].ToolCalls) != 1 || msgs[2].Role != agentstream.RoleTool {
		t.Fatalf("messages %+v, want the input, the tool call and its result", msgs)
	}
	used := run.end.Usage.InputTokens + run.end.Usage.OutputTokens
	if n, err := openStore(t, e.srv.Config().DatabaseURL).Usage(t.Context(), "ada", time.Now()); err != nil || n != used || n < 5 {
		t.Fatalf("ada's usage today %d (%v), want the run's %d (at least the budget)", n, err, used)
	}
	before := toMidnight()
	resp := e.request("POST", "/v1/threads/"+th.ID+"/runs", `{"input": "again"}`, as(limAda, nil))
	wantLimited(t, resp, agentstream.CodeBudgetExceeded, "limits.daily_tokens (5) reached for this user", max(before-5, 1), before+1)
	if msgs := listAs[agentstream.Message](e, limAda, "/v1/threads/"+th.ID+"/messages"); len(msgs) != 3 {
		t.Fatalf("the refused run wrote: %d messages, want 3", len(msgs))
	}
	// Bob's budget is his own.
	e.runAs(limBob, e.threadAs(limBob).ID, "hi")
}

// TestLimitCancelledRunCounts: the tokens of a run cancelled mid-answer
// count: those of the calls that ended, as the model reported them.
func TestLimitCancelledRunCounts(t *testing.T) {
	t.Parallel()
	e := start(t, sim.Options{Decide: func(r *sim.Request) sim.Behavior {
		if r.LastMessage().Role == "user" {
			return alwaysTools(r)
		}
		return sim.Behavior{Tokens: 1000, Pace: 10 * time.Millisecond}
	}}, withUsers(func(c *config.Config) { c.Limits.DailyTokens = 1_000_000 }))
	th := e.threadAs(limAda)
	r, runID := e.runAs(limAda, th.ID, "hi")
	for {
		ev := readN(t, r, 1)[0]
		if ev.Type == string(agentstream.EventMessageDelta) {
			break // the second call streams
		}
	}
	if s := e.status("POST", "/v1/runs/"+runID+"/cancel", as(limAda, nil)); s != http.StatusOK {
		t.Fatalf("cancel: %d", s)
	}
	evs := readToEnd(t, r)
	if last := evs[len(evs)-1]; last.Type != string(agentstream.EventRunCancelled) {
		t.Fatalf("the run ended %s, want cancelled", last.Type)
	}
	run := waitEndAs(e, limAda, runID)
	used := run.Usage.InputTokens + run.Usage.OutputTokens
	first := e.sim.Requests()[0]
	if want := int64(sim.PromptTokens(&first)); run.Usage.InputTokens != want || used == 0 {
		t.Fatalf("the cancelled run's usage %+v, want the first call's (%d input tokens)", run.Usage, want)
	}
	n, err := openStore(t, e.srv.Config().DatabaseURL).Usage(t.Context(), "ada", time.Now())
	if err != nil || n != used {
		t.Fatalf("ada's usage today %d (%v), want the cancelled run's %d", n, err, used)
	}
}

// TestFairAdmission: with two workers, a greedy user's queued runs do not
// hold back another user's run: it starts at the first free worker, before
// the greedy user's third queued run starts (with one queue in order, it
// would start after all of them).
func TestFairAdmission(t *testing.T) {
	t.Parallel()
	e := start(t, sim.Options{Tokens: 40, Pace: 20 * time.Millisecond}, withUsers(func(c *config.Config) {
		c.Runs.MaxConcurrent = 2
	}))
	const greedyRuns = 6 // 2 running, 4 queued
	threads := make([]agentstream.Thread, greedyRuns)
	for i := range threads {
		threads[i] = e.threadAs(limAda)
	}
	bobs := e.threadAs(limBob)
	var mu sync.Mutex
	started := make([]time.Time, greedyRuns)
	var wg sync.WaitGroup
	for i := range greedyRuns {
		r, _ := e.runAs(limAda, threads[i].ID, "hi")
		wg.Go(func() {
			for {
				ev, err := r.Next()
				if err != nil {
					if !errors.Is(err, io.EOF) {
						t.Errorf("greedy run %d: %v", i, err)
					}
					return
				}
				if ev.Type == string(agentstream.EventRunStarted) {
					mu.Lock()
					started[i] = time.Now()
					mu.Unlock()
				}
			}
		})
		if i == 1 {
			// The first two hold the workers before the others queue.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if err := e.sim.WaitActive(ctx, 2); err != nil {
				t.Fatalf("two runs never reached the model: %v", err)
			}
			cancel()
		}
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if _, q := e.srv.Load(); q == greedyRuns-2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the greedy runs never queued")
		}
	}
	r, _ := e.runAs(limBob, bobs.ID, "hi")
	var bobFirst time.Time
	for bobFirst.IsZero() {
		ev := readN(t, r, 1)[0]
		if ev.Type == string(agentstream.EventMessageDelta) {
			bobFirst = time.Now()
		}
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	// The greedy runs start in order; the third queued is the fifth run.
	third := started[4]
	if third.IsZero() || !bobFirst.Before(third) {
		t.Fatalf("the other user's first token came at %v, the greedy user's third queued run started at %v: it waited behind the greedy queue",
			bobFirst.Format(time.StampMilli), third.Format(time.StampMilli))
	}
}

// TestLimitsAcrossInstances: two instances sharing PostgreSQL and Redis
// hold each limit together: a user's rate, active runs and tokens count
// on both.
func TestLimitsAcrossInstances(t *testing.T) {
	t.Parallel()
	var shared backend
	for _, b := range backends() {
		if b.name == "postgres-redis" {
			shared = b
		}
	}
	pair := func(t *testing.T, simOpts sim.Options, mod func(*config.Config)) (*env, *env) {
		t.Helper()
		services := shared.services(t)
		return start(t, simOpts, both(services, withUsers(mod))), start(t, simOpts, both(services, withUsers(mod)))
	}

	t.Run("rate", func(t *testing.T) {
		t.Parallel()
		a, b := pair(t, sim.Options{}, func(c *config.Config) { c.Limits.RequestsPerMinute, c.Limits.Burst = 1, 2 })
		for _, e := range []*env{a, b} {
			if s := e.status("GET", "/v1/agents", as(limAda, nil)); s != http.StatusOK {
				t.Fatalf("a request within the burst: %d", s)
			}
		}
		for _, e := range []*env{a, b} {
			wantLimited(t, e.request("GET", "/v1/agents", "", as(limAda, nil)), agentstream.CodeUserRateLimited,
				"limits.requests_per_minute (1) reached for this user", 1, 60)
		}
		if s := b.status("GET", "/v1/agents", as(limBob, nil)); s != http.StatusOK {
			t.Fatalf("another user's request: %d", s)
		}
	})

	t.Run("concurrent runs", func(t *testing.T) {
		t.Parallel()
		a, b := pair(t, sim.Options{Tokens: 500, Pace: 10 * time.Millisecond}, func(c *config.Config) { c.Limits.ConcurrentRuns = 1 })
		first, second := a.threadAs(limAda), a.threadAs(limAda)
		a.runAs(limAda, first.ID, "hi")
		resp := b.request("POST", "/v1/threads/"+second.ID+"/runs", `{"input": "hi"}`, as(limAda, nil))
		wantLimited(t, resp, agentstream.CodeTooManyRuns, "limits.concurrent_runs (1) reached for this user", 1, 1)
		if msgs := listAs[agentstream.Message](b, limAda, "/v1/threads/"+second.ID+"/messages"); len(msgs) != 0 {
			t.Fatalf("the refused run wrote %d messages", len(msgs))
		}
	})

	t.Run("daily tokens", func(t *testing.T) {
		t.Parallel()
		a, b := pair(t, sim.Options{Tokens: 10}, func(c *config.Config) { c.Limits.DailyTokens = 5 })
		th := a.threadAs(limAda)
		r, _ := a.runAs(limAda, th.ID, "hi")
		evs := readToEnd(t, r)
		if last := evs[len(evs)-1]; last.Type != string(agentstream.EventRunCompleted) {
			t.Fatalf("the first run ended %s: one call goes past the budget, but it had none used", last.Type)
		}
		resp := b.request("POST", "/v1/threads/"+th.ID+"/runs", `{"input": "again"}`, as(limAda, nil))
		wantLimited(t, resp, agentstream.CodeBudgetExceeded, "limits.daily_tokens (5) reached for this user", max(toMidnight()-5, 1), toMidnight()+1)
	})
}
