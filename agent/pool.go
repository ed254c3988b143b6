package agent

import (
	"slices"
	"sync"
)

// pool bounds how many runs execute at once and how many wait. Admission is
// two-step so the caller can write the run to the store between reserving
// a place and submitting: a request that gets 429 has written nothing.
//
// Waiting jobs are queued per user and served in turn (round robin): a
// worker that frees goes to the user with the fewest jobs running, the
// first in the turn among equals, whose oldest waiting job runs; that user
// then goes to the end of the turn. A user who had no job waiting joins
// the turn ahead of the users already served, after the other newcomers.
// So a user with no run running gets the next worker that frees, however
// many runs another user has queued. Jobs of one user run in the order
// they came.
type pool struct {
	maxRunning, maxQueued int

	mu       sync.Mutex
	running  int
	reserved int
	// queues holds the waiting jobs of each user who has some; turn
	// orders those users, the next to be served first. The first fresh
	// of turn have not been served since they joined it.
	queues map[string]*userQueue
	turn   []*userQueue
	fresh  int
	queued int
	// userRunning counts each user's running jobs (users with none are
	// not kept).
	userRunning map[string]int
	closed      bool
}

// userQueue is one user's waiting jobs, oldest first.
type userQueue struct {
	user string
	jobs []*job
}

type job struct {
	// user is whose job it is: jobs wait in a queue of their user's.
	user string
	run  func()
	// positioned is told the job's place in the queue (1 runs next) when
	// it is queued and each time it goes down, outside the pool's lock. A
	// place is where the job would start as the pool stands (order).
	positioned func(pos int)
	// told is the place the job was last told; guarded by the pool's mu.
	// Places only go down: one that would go up (a job of a user with
	// fewer running jobs came, or a running job ended) is not told.
	told int
}

func newPool(maxRunning, maxQueued int) *pool {
	return &pool{maxRunning: maxRunning, maxQueued: maxQueued, queues: map[string]*userQueue{}, userRunning: map[string]int{}}
}

// reserve takes a place for a job that will be submitted, or reports that
// the pool and its queue are full (or closed).
func (p *pool) reserve() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.running+p.queued+p.reserved >= p.maxRunning+p.maxQueued {
		return false
	}
	p.reserved++
	return true
}

// unreserve gives back a reservation that will not be submitted.
func (p *pool) unreserve() {
	p.mu.Lock()
	p.reserved--
	p.mu.Unlock()
}

// submit turns a reservation into a running or queued job.
func (p *pool) submit(j *job) {
	p.mu.Lock()
	p.reserved--
	if p.running < p.maxRunning {
		p.running++
		p.userRunning[j.user]++
		p.mu.Unlock()
		go p.exec(j)
		return
	}
	q := p.queues[j.user]
	if q == nil {
		q = &userQueue{user: j.user}
		p.queues[j.user] = q
		p.turn = slices.Insert(p.turn, p.fresh, q)
		p.fresh++
	}
	q.jobs = append(q.jobs, j)
	p.queued++
	pos := slices.Index(p.order(), j) + 1
	j.told = pos
	p.mu.Unlock()
	j.positioned(pos)
}

// pick returns the index in turn of the user whose job runs next: the
// fewest running first, then the first in turn. Called with mu held;
// running is p.userRunning or a copy.
func pick(turn []*userQueue, running map[string]int) int {
	best := 0
	for i, q := range turn {
		if running[q.user] < running[turn[best].user] {
			best = i
		}
	}
	return best
}

// order returns the waiting jobs in the order they would start if no
// running job ended meanwhile (then a user's fewer running jobs can move
// theirs ahead). Called with mu held.
func (p *pool) order() []*job {
	running := make(map[string]int, len(p.turn))
	for _, q := range p.turn {
		running[q.user] = p.userRunning[q.user]
	}
	turn := slices.Clone(p.turn)
	at := make(map[*userQueue]int, len(turn))
	out := make([]*job, 0, p.queued)
	for len(turn) > 0 {
		i := pick(turn, running)
		q := turn[i]
		out = append(out, q.jobs[at[q]])
		at[q]++
		running[q.user]++
		turn = slices.Delete(turn, i, i+1)
		if at[q] < len(q.jobs) {
			turn = append(turn, q)
		}
	}
	return out
}

// startNow takes a worker for a job that is to run at once, when one is
// free and no job waits or holds a reservation: its run is then saved as running, which spares
// it the write that starts a queued run. The caller then calls begin with
// the job, or unstart when it will not run.
func (p *pool) startNow(user string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	// Runs that reserved a place come first: they are submitted later and
	// may then queue, and must find the capacity reserve promised them.
	if p.closed || p.queued > 0 || p.reserved > 0 || p.running >= p.maxRunning {
		return false
	}
	p.running++
	p.userRunning[user]++
	return true
}

// begin runs a job on the worker startNow took (for the job's user).
func (p *pool) begin(j *job) { go p.exec(j) }

// unstart gives back the worker startNow took for user.
func (p *pool) unstart(user string) { p.next(user) }

func (p *pool) exec(j *job) {
	j.run()
	p.next(j.user)
}

// next hands the worker a job of user's has freed to the oldest job of
// the user whose turn it is (pick), or lets it go.
func (p *pool) next(user string) {
	p.mu.Lock()
	if p.userRunning[user]--; p.userRunning[user] <= 0 {
		delete(p.userRunning, user)
	}
	if p.queued == 0 {
		p.running--
		p.mu.Unlock()
		return
	}
	i := pick(p.turn, p.userRunning)
	q := p.turn[i]
	next := q.jobs[0]
	q.jobs[0] = nil
	q.jobs = q.jobs[1:]
	p.queued--
	p.userRunning[q.user]++
	p.turn = slices.Delete(p.turn, i, i+1)
	if i < p.fresh {
		p.fresh--
	}
	if len(q.jobs) > 0 {
		p.turn = append(p.turn, q)
	} else {
		delete(p.queues, q.user)
	}
	waiting := p.places()
	p.mu.Unlock()
	go p.exec(next)
	reposition(waiting)
}

// withdraw takes a job out of the queue, reporting whether it was there
// (false: it already runs, or ran). A run cancelled while it waits is
// withdrawn so that it ends at once instead of holding its place until a
// worker is free; the caller runs it outside the pool.
func (p *pool) withdraw(j *job) bool {
	p.mu.Lock()
	q := p.queues[j.user]
	i := -1
	if q != nil {
		i = slices.Index(q.jobs, j)
	}
	if i < 0 {
		p.mu.Unlock()
		return false
	}
	q.jobs = slices.Delete(q.jobs, i, i+1)
	p.queued--
	if len(q.jobs) == 0 {
		t := slices.Index(p.turn, q)
		p.turn = slices.Delete(p.turn, t, t+1)
		if t < p.fresh {
			p.fresh--
		}
		delete(p.queues, q.user)
	}
	waiting := p.places()
	p.mu.Unlock()
	reposition(waiting)
	return true
}

// placed is a waiting job and its place.
type placed struct {
	j   *job
	pos int
}

// places returns the waiting jobs whose place went down, with their new
// place. Called with mu held.
func (p *pool) places() []placed {
	var out []placed
	for i, j := range p.order() {
		if pos := i + 1; pos < j.told {
			j.told = pos
			out = append(out, placed{j, pos})
		}
	}
	return out
}

// reposition tells waiting jobs their new places.
func reposition(waiting []placed) {
	for _, w := range waiting {
		w.j.positioned(w.pos)
	}
}

// close refuses further reservations.
func (p *pool) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
}

// load returns how many jobs run and wait.
func (p *pool) load() (running, queued int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.running, p.queued
}
