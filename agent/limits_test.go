package agent

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/tools"
)

// usageCounter counts the store's usage calls and run inserts under
// limits; with failFrom set, the usage reads from that one on (1 is the
// first) and every add fail.
type usageCounter struct {
	agentstream.Store
	reads, adds, limited atomic.Int32
	failFrom             int32
}

var errUsageDown = agentstream.Errorf(agentstream.CodeUnavailable, "the usage table is down")

func (s *usageCounter) Usage(ctx context.Context, userID string, at time.Time) (int64, error) {
	if n := s.reads.Add(1); s.failFrom > 0 && n >= s.failFrom {
		return 0, errUsageDown
	}
	return s.Store.Usage(ctx, userID, at)
}

func (s *usageCounter) AddUsage(ctx context.Context, userID string, at time.Time, tokens int64) error {
	s.adds.Add(1)
	if s.failFrom > 0 {
		return errUsageDown
	}
	return s.Store.AddUsage(ctx, userID, at, tokens)
}

func (s *usageCounter) CreateRunLimited(ctx context.Context, run agentstream.Run, lim agentstream.RunLimits, input agentstream.Message, history ...agentstream.Message) (agentstream.Message, error) {
	s.limited.Add(1)
	return s.Store.CreateRunLimited(ctx, run, lim, input, history...)
}

// toolTurns is a script of two tool-calling turns, then an answer, each
// call using 10+5 tokens.
func toolTurns() func(int, agentstream.ModelRequest) turn {
	u := agentstream.Usage{InputTokens: 10, OutputTokens: 5}
	call := func(id string) turn {
		return turn{calls: []fakeCall{{id: id, name: "echo", pieces: []string{`{}`}}}, usage: u}
	}
	return scripted(call("c1"), call("c2"), turn{text: []string{"done"}, usage: u})
}

var echoTool = tools.NewFunc("echo", "Echoes.", `{"type":"object"}`, func(_ context.Context, a json.RawMessage) (string, error) {
	return string(a), nil
})

// TestLimitsOffCostNothing: without limits a run reads and writes no
// usage and inserts without counting runs; with a budget every model call
// is checked before and counted after.
func TestLimitsOffCostNothing(t *testing.T) {
	t.Parallel()
	counter := &usageCounter{}
	h := newHarness(t, setup{tools: []agentstream.Tool{echoTool}, script: toolTurns(),
		wrap: func(s agentstream.Store) agentstream.Store { counter.Store = s; return counter }})
	run := h.start(h.thread(nil), "go")
	end(t, h.events(run.ID), agentstream.EventRunCompleted)
	if r, a, l := counter.reads.Load(), counter.adds.Load(), counter.limited.Load(); r+a+l != 0 {
		t.Fatalf("limits off: %d usage reads, %d adds, %d limited inserts; want none", r, a, l)
	}

	counter = &usageCounter{}
	h = newHarness(t, setup{tools: []agentstream.Tool{echoTool}, script: toolTurns(), cfg: Config{Limits: Limits{DailyTokens: 1000, ConcurrentRuns: 5}},
		wrap: func(s agentstream.Store) agentstream.Store { counter.Store = s; return counter }})
	run = h.start(h.thread(nil), "go")
	end(t, h.events(run.ID), agentstream.EventRunCompleted)
	// One read at Start, one before each of the 3 calls; one add after each.
	if r, a, l := counter.reads.Load(), counter.adds.Load(), counter.limited.Load(); r != 4 || a != 3 || l != 1 {
		t.Fatalf("limits on: %d usage reads, %d adds, %d limited inserts; want 4, 3, 1", r, a, l)
	}
	if n, err := h.db.Usage(t.Context(), "u1", time.Now()); err != nil || n != 45 {
		t.Fatalf("usage %d (%v), want 45", n, err)
	}
}

// TestBudgetStopsAtNextTurn: a run whose user's budget is used up by its
// first call stops before its second, failed with budget_exceeded, with
// the first turn's messages saved.
func TestBudgetStopsAtNextTurn(t *testing.T) {
	t.Parallel()
	h := newHarness(t, setup{tools: []agentstream.Tool{echoTool}, script: toolTurns(), cfg: Config{Limits: Limits{DailyTokens: 15}}})
	th := h.thread(nil)
	run := h.start(th, "go")
	ended := end(t, h.events(run.ID), agentstream.EventRunFailed)
	if ended.Error == nil || ended.Error.Code != agentstream.CodeBudgetExceeded ||
		!strings.Contains(ended.Error.Message, "limits.daily_tokens (15) reached for this user (15 tokens used today, UTC): the run stopped before its model call 2") {
		t.Fatalf("end %+v", ended.Error)
	}
	h.model.mu.Lock()
	calls := len(h.model.reqs)
	h.model.mu.Unlock()
	if calls != 1 {
		t.Fatalf("%d model calls, want 1", calls)
	}
	if got := h.stored(run.ID); got.Status != agentstream.RunFailed || got.Usage.InputTokens != 10 {
		t.Fatalf("stored run %+v", got)
	}
	msgs, err := h.db.ListMessages(t.Context(), th.ID)
	if err != nil || len(msgs) != 3 || len(msgs[1].ToolCalls) != 1 || msgs[2].Role != agentstream.RoleTool {
		t.Fatalf("messages %+v (%v), want the input, the call and its result", msgs, err)
	}
	// The next run is refused at Start, with the time to midnight UTC.
	_, err = h.r.Start(t.Context(), StartRequest{Thread: th, UserID: th.UserID, Input: "again"})
	var e *agentstream.Error
	if !errors.As(err, &e) || e.Code != agentstream.CodeBudgetExceeded || e.RetryAfter <= 0 || e.RetryAfter > 24*time.Hour {
		t.Fatalf("Start past the budget: %v", err)
	}
}

// TestUsageStoreDown: a run whose user's usage cannot be read or added
// goes on to its end; a Start that cannot read it is refused with the
// store's error.
func TestUsageStoreDown(t *testing.T) {
	t.Parallel()
	counter := &usageCounter{failFrom: 2}
	h := newHarness(t, setup{tools: []agentstream.Tool{echoTool}, script: toolTurns(), cfg: Config{Limits: Limits{DailyTokens: 15}},
		wrap: func(s agentstream.Store) agentstream.Store { counter.Store = s; return counter }})
	th := h.thread(nil)
	run := h.start(th, "go")
	end(t, h.events(run.ID), agentstream.EventRunCompleted)
	if r, a := counter.reads.Load(), counter.adds.Load(); r != 4 || a != 3 {
		t.Fatalf("%d reads and %d adds, want 4 and 3 (each tried)", r, a)
	}
	if _, err := h.r.Start(t.Context(), StartRequest{Thread: th, UserID: th.UserID, Input: "again"}); !errors.Is(err, agentstream.ErrUnavailable) {
		t.Fatalf("Start with the usage unreadable: %v", err)
	}
}
