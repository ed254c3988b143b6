package agent

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/agentstream/agentstream"
)

// TestPoolAccounting: reservations count against capacity but not load;
// submit runs or queues; a finished job hands its worker to the head of the
// queue and tells the others their new places; close refuses reservations.
func TestPoolAccounting(t *testing.T) {
	t.Parallel()
	p := newPool(1, 2)
	checkLoad := func(wantRunning, wantQueued int) {
		t.Helper()
		eventually(t, "the pool's load", func() bool {
			r, q := p.load()
			return r == wantRunning && q == wantQueued
		})
	}

	for i := range 3 {
		if !p.reserve() {
			t.Fatalf("reservation %d refused with room for 3", i+1)
		}
	}
	if p.reserve() {
		t.Fatal("a fourth reservation was granted with room for 3")
	}
	if r, q := p.load(); r != 0 || q != 0 {
		t.Fatalf("load %d, %d: reservations are not load", r, q)
	}
	p.unreserve()
	if !p.reserve() {
		t.Fatal("a returned reservation was not reusable")
	}

	type jobState struct {
		release  chan struct{}
		started  chan struct{}
		finished chan struct{}
		pos      chan int
	}
	newJob := func() (*job, *jobState) {
		s := &jobState{release: make(chan struct{}), started: make(chan struct{}), finished: make(chan struct{}), pos: make(chan int, 10)}
		return &job{
			run: func() {
				close(s.started)
				<-s.release
				close(s.finished)
			},
			positioned: func(pos int) { s.pos <- pos },
		}, s
	}
	j1, s1 := newJob()
	j2, s2 := newJob()
	j3, s3 := newJob()

	p.submit(j1)
	receive(t, s1.started, "job 1 to start")
	checkLoad(1, 0)
	p.submit(j2)
	if pos := receive(t, s2.pos, "job 2's position"); pos != 1 {
		t.Fatalf("job 2 queued at %d, want 1", pos)
	}
	p.submit(j3)
	if pos := receive(t, s3.pos, "job 3's position"); pos != 2 {
		t.Fatalf("job 3 queued at %d, want 2", pos)
	}
	checkLoad(1, 2)
	if p.reserve() {
		t.Fatal("reserved past running + queued capacity")
	}

	close(s1.release)
	receive(t, s2.started, "job 2 to start")
	if pos := receive(t, s3.pos, "job 3's new position"); pos != 1 {
		t.Fatalf("job 3 moved to %d, want 1", pos)
	}
	checkLoad(1, 1)
	select {
	case <-s3.started:
		t.Fatal("job 3 started while job 2 held the only worker")
	default:
	}
	// A place freed in the queue can be reserved again.
	if !p.reserve() {
		t.Fatal("no reservation with a free place in the queue")
	}
	p.unreserve()

	close(s2.release)
	receive(t, s3.started, "job 3 to start")
	checkLoad(1, 0)
	close(s3.release)
	receive(t, s3.finished, "job 3 to finish")
	checkLoad(0, 0)
	if len(s1.pos) != 0 || len(s2.pos) != 0 || len(s3.pos) != 0 {
		t.Fatal("extra position reports")
	}

	p.close()
	if p.reserve() {
		t.Fatal("a closed pool granted a reservation")
	}
}

// TestRunnerQueue: one worker and a queue of two. Queued runs say where
// they stand, positions only go down and reach 1 before the run starts, runs
// start in order, and a fourth run is refused without writing anything.
func TestRunnerQueue(t *testing.T) {
	t.Parallel()
	gates := map[string]chan struct{}{"a": make(chan struct{}), "b": make(chan struct{}), "c": make(chan struct{})}
	h := newHarness(t, setup{
		cfg: Config{MaxConcurrentRuns: 1, MaxQueuedRuns: 2},
		script: func(_ int, req agentstream.ModelRequest) turn {
			return turn{text: []string{"answer"}, wait: gates[req.Messages[len(req.Messages)-1].Content]}
		},
	})
	threads := []agentstream.Thread{h.thread(nil), h.thread(nil), h.thread(nil), h.thread(nil)}
	a := h.start(threads[0], "a")
	h.model.waitStreamed(t, 1)
	b := h.start(threads[1], "b")
	c := h.start(threads[2], "c")
	if r, q := h.r.Load(); r != 1 || q != 2 {
		t.Fatalf("load %d running, %d queued; want 1, 2", r, q)
	}

	_, err := h.r.Start(context.Background(), StartRequest{Thread: threads[3], UserID: "u1", Input: "d"})
	if code := codeOf(t, err); code != agentstream.CodeOverloaded {
		t.Fatalf("fourth run: code %s (%v), want overloaded", code, err)
	}
	if msgs := h.messages(threads[3].ID); len(msgs) != 0 {
		t.Fatalf("the refused run wrote %d messages", len(msgs))
	}

	close(gates["a"])
	h.waitEvents(b.ID, "b to start", func(evs []agentstream.Event) bool { return count(evs, agentstream.EventRunStarted) == 1 })
	close(gates["b"])
	close(gates["c"])

	wantPositions := map[string][]int{a.ID: nil, b.ID: {1}, c.ID: {2, 1}}
	for _, run := range []agentstream.Run{a, b, c} {
		evs := h.events(run.ID)
		end(t, evs, agentstream.EventRunCompleted)
		if evs[0].Type != agentstream.EventRunCreated {
			t.Fatalf("run %s starts with %s", run.ID, evs[0].Type)
		}
		var positions []int
		started := false
		for _, ev := range evs {
			switch ev.Type {
			case agentstream.EventRunQueued:
				if started {
					t.Fatalf("run %s: run.queued after run.started: %v", run.ID, types(evs))
				}
				positions = append(positions, decode[agentstream.RunQueuedData](t, ev).Position)
			case agentstream.EventRunStarted:
				started = true
			}
		}
		if !started {
			t.Fatalf("run %s never started: %v", run.ID, types(evs))
		}
		for i := 1; i < len(positions); i++ {
			if positions[i] > positions[i-1] {
				t.Fatalf("run %s: positions %v go up", run.ID, positions)
			}
		}
		if len(positions) > 0 && positions[len(positions)-1] != 1 {
			t.Fatalf("run %s: last position %d before starting, want 1", run.ID, positions[len(positions)-1])
		}
		if want := wantPositions[run.ID]; !slices.Equal(positions, want) {
			t.Fatalf("run %s: positions %v, want %v", run.ID, positions, want)
		}
	}

	// Runs reached the model in the order they came.
	var order string
	for _, req := range h.model.requests() {
		order += req.Messages[len(req.Messages)-1].Content
	}
	if order != "abc" {
		t.Fatalf("model calls in order %q, want abc", order)
	}
	eventually(t, "the pool to drain", func() bool {
		r, q := h.r.Load()
		return r == 0 && q == 0
	})
}

// TestCancelQueued: a queued run can be cancelled; it leaves the queue at
// once (the runs behind it move up), never starts, never reaches the model,
// and ends cancelled while the run ahead of it still holds the worker.
func TestCancelQueued(t *testing.T) {
	t.Parallel()
	h := newHarness(t, setup{
		cfg:    Config{MaxConcurrentRuns: 1},
		script: scripted(turn{text: []string{"thinking"}, hold: true}),
	})
	a := h.start(h.thread(nil), "a")
	h.model.waitStreamed(t, 1)
	thB := h.thread(nil)
	b := h.start(thB, "b")
	c := h.start(h.thread(nil), "c")
	h.waitEvents(c.ID, "c queued second", func(evs []agentstream.Event) bool {
		return count(evs, agentstream.EventRunQueued) == 1
	})
	if !h.r.Cancel(b.ID) {
		t.Fatal("Cancel of a queued run returned false")
	}
	// b ends while a still runs: it does not wait for the worker.
	evs := h.events(b.ID)
	if e := end(t, evs, agentstream.EventRunCancelled); e.Error == nil || e.Error.Code != agentstream.CodeCancelled {
		t.Fatalf("queued run ended %+v", e)
	}
	if count(evs, agentstream.EventRunStarted) != 0 {
		t.Fatalf("the cancelled queued run started: %v", types(evs))
	}
	if got := h.stored(b.ID); got.Status != agentstream.RunCancelled {
		t.Fatalf("stored queued run %+v", got)
	}
	if running, queued := h.r.Load(); running != 1 || queued != 1 {
		t.Fatalf("load %d running, %d queued after withdrawing b; want 1, 1", running, queued)
	}
	cEvs := h.waitEvents(c.ID, "c to move up", func(evs []agentstream.Event) bool {
		return count(evs, agentstream.EventRunQueued) == 2
	})
	if q := decode[agentstream.RunQueuedData](t, cEvs[len(cEvs)-1]); q.Position != 1 {
		t.Fatalf("c moved to position %d, want 1", q.Position)
	}
	if h.r.Cancel(b.ID) {
		t.Fatal("a second Cancel of the ended run reported it active")
	}

	if !h.r.Cancel(a.ID) || !h.r.Cancel(c.ID) {
		t.Fatal("Cancel of an active run returned false")
	}
	end(t, h.events(a.ID), agentstream.EventRunCancelled)
	end(t, h.events(c.ID), agentstream.EventRunCancelled)
	if n := len(h.model.requests()); n != 1 {
		t.Fatalf("the model was called %d times, want 1", n)
	}
	if msgs := h.messages(thB.ID); len(msgs) != 1 || msgs[0].Content != "b" {
		t.Fatalf("stored %+v: want the input alone", msgs)
	}
	eventually(t, "an idle pool", func() bool {
		r, q := h.r.Load()
		return r == 0 && q == 0
	})
}

// TestPoolWithdraw: only a waiting job can be withdrawn, once; the jobs
// behind it are told their new places and the ones ahead are not.
func TestPoolWithdraw(t *testing.T) {
	t.Parallel()
	p := newPool(1, 3)
	release := make(chan struct{})
	positions := make([]chan int, 4)
	jobs := make([]*job, 4)
	for i := range jobs {
		positions[i] = make(chan int, 10)
		jobs[i] = &job{run: func() { <-release }, positioned: func(pos int) { positions[i] <- pos }}
		if !p.reserve() {
			t.Fatalf("reservation %d refused", i)
		}
		p.submit(jobs[i])
	}
	if running, queued := p.load(); running != 1 || queued != 3 {
		t.Fatalf("load %d, %d; want 1, 3", running, queued)
	}
	if p.withdraw(jobs[0]) {
		t.Fatal("withdrew the running job")
	}
	for i := 1; i < 4; i++ {
		receive(t, positions[i], "the first position")
	}
	if !p.withdraw(jobs[2]) {
		t.Fatal("could not withdraw a waiting job")
	}
	if p.withdraw(jobs[2]) {
		t.Fatal("withdrew a job twice")
	}
	if pos := receive(t, positions[3], "job 3's new place"); pos != 2 {
		t.Fatalf("job 3 moved to %d, want 2", pos)
	}
	if len(positions[1]) != 0 {
		t.Fatal("the job ahead of the withdrawn one was repositioned")
	}
	if running, queued := p.load(); running != 1 || queued != 2 {
		t.Fatalf("load %d, %d; want 1, 2", running, queued)
	}
	close(release)
	eventually(t, "an idle pool", func() bool {
		r, q := p.load()
		return r == 0 && q == 0
	})
}

// TestPoolStartNow: startNow takes a free worker only while no job waits,
// and unstart hands it to the first waiting job or lets it go.
func TestPoolStartNow(t *testing.T) {
	t.Parallel()
	p := newPool(1, 1)
	if !p.startNow("") {
		t.Fatal("startNow refused with a free worker")
	}
	if p.startNow("") {
		t.Fatal("startNow granted a second worker of one")
	}
	if r, q := p.load(); r != 1 || q != 0 {
		t.Fatalf("load %d, %d; want 1 running", r, q)
	}
	// A job reserved now waits behind the started one.
	if !p.reserve() {
		t.Fatal("reserve refused with room in the queue")
	}
	ran := make(chan struct{})
	p.submit(&job{run: func() { close(ran) }, positioned: func(int) {}})
	if r, q := p.load(); r != 1 || q != 1 {
		t.Fatalf("load %d, %d; want 1 running, 1 queued", r, q)
	}
	p.unstart("") // the started job will not run after all: the waiting one does
	receive(t, ran, "the waiting job to run on the worker given back")
	eventually(t, "the pool to empty", func() bool { r, q := p.load(); return r == 0 && q == 0 })

	// A started job runs on its worker and gives it back when done.
	if !p.startNow("") {
		t.Fatal("startNow refused on an idle pool")
	}
	done := make(chan struct{})
	p.begin(&job{run: func() { close(done) }})
	receive(t, done, "the started job to run")
	eventually(t, "the worker to be given back", func() bool { r, _ := p.load(); return r == 0 })

	// A run holding a reservation comes first: startNow leaves it the
	// capacity reserve promised, even with a worker free.
	if !p.reserve() {
		t.Fatal("reserve refused on an idle pool")
	}
	if p.startNow("") {
		t.Fatal("startNow granted while a reservation waits to be submitted")
	}
	p.unreserve()

	p.close()
	if p.startNow("") {
		t.Fatal("startNow granted on a closed pool")
	}
}

// TestPoolRoundRobin: waiting jobs are served per user, the user with the
// fewest running jobs first, in turn among equals: a user's first job
// starts at the first free worker however many jobs another user queued
// before it, and one user's jobs start in the order they came. Places
// only go down, and end at 1.
func TestPoolRoundRobin(t *testing.T) {
	t.Parallel()
	p := newPool(2, 20)
	type state struct {
		release chan struct{}
		pos     []int
	}
	var mu sync.Mutex
	started := make(chan string, 20)
	states := map[string]*state{}
	submit := func(user, name string) {
		t.Helper()
		s := &state{release: make(chan struct{})}
		mu.Lock()
		states[name] = s
		mu.Unlock()
		if !p.reserve() {
			t.Fatalf("no room for %s", name)
		}
		p.submit(&job{
			user: user,
			run: func() {
				started <- name
				<-s.release
			},
			positioned: func(pos int) {
				mu.Lock()
				s.pos = append(s.pos, pos)
				mu.Unlock()
			},
		})
	}
	next := func(want string) {
		t.Helper()
		if got := receive(t, started, want+" to start"); got != want {
			t.Fatalf("%s started, want %s", got, want)
		}
	}
	release := func(name string) {
		mu.Lock()
		s := states[name]
		mu.Unlock()
		close(s.release)
	}
	places := func(name string) []int {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(states[name].pos)
	}

	submit("greedy", "g1")
	submit("greedy", "g2")
	// Both start at once, in either order.
	first, second := receive(t, started, "g1 or g2 to start"), receive(t, started, "g1 or g2 to start")
	if first+second != "g1g2" && first+second != "g2g1" {
		t.Fatalf("%s and %s started, want g1 and g2", first, second)
	}
	for _, n := range []string{"g3", "g4", "g5", "g6"} {
		submit("greedy", n)
	}
	if got := places("g6"); !slices.Equal(got, []int{4}) {
		t.Fatalf("g6 placed %v, want [4]", got)
	}
	// Other users, with no job running, go ahead of the greedy one.
	submit("other", "o1")
	submit("third", "t1")
	submit("third", "t2")
	if got := places("o1"); !slices.Equal(got, []int{1}) {
		t.Fatalf("o1 placed %v, want [1]: its user runs nothing", got)
	}
	if got := places("t1"); !slices.Equal(got, []int{2}) {
		t.Fatalf("t1 placed %v, want [2]", got)
	}
	// t2 comes after o1 and t1: third then runs one, greedy two.
	if got := places("t2"); !slices.Equal(got, []int{3}) {
		t.Fatalf("t2 placed %v, want [3]", got)
	}
	release("g1")
	next("o1") // the first free worker
	// greedy and third run nothing now: greedy came first.
	release("g2")
	next("g3")
	release("o1")
	next("t1") // third runs nothing, greedy one
	release("g3")
	next("g4") // greedy runs nothing, third one
	release("t1")
	next("t2")
	release("g4")
	next("g5")
	release("t2")
	next("g6")
	release("g5")
	release("g6")
	eventually(t, "the pool to empty", func() bool { r, q := p.load(); return r == 0 && q == 0 })
	for name := range states {
		pos := places(name)
		for i := 1; i < len(pos); i++ {
			if pos[i] >= pos[i-1] {
				t.Errorf("%s's places %v do not go down", name, pos)
			}
		}
		if len(pos) > 0 && pos[len(pos)-1] != 1 {
			t.Errorf("%s's places %v do not end at 1", name, pos)
		}
	}
}
