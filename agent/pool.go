package agent

import (
	"slices"
	"sync"
)

// pool bounds how many runs execute at once and how many wait. Admission is
// two-step so the caller can write the run to the store between reserving
// a place and submitting: a request that gets 429 has written nothing.
type pool struct {
	maxRunning, maxQueued int

	mu       sync.Mutex
	running  int
	reserved int
	queue    []*job
	closed   bool
}

type job struct {
	run func()
	// positioned is told the job's place in the queue (1 runs next) each
	// time it changes, outside the pool's lock.
	positioned func(pos int)
}

func newPool(maxRunning, maxQueued int) *pool {
	return &pool{maxRunning: maxRunning, maxQueued: maxQueued}
}

// reserve takes a place for a job that will be submitted, or reports that
// the pool and its queue are full (or closed).
func (p *pool) reserve() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.running+len(p.queue)+p.reserved >= p.maxRunning+p.maxQueued {
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
		p.mu.Unlock()
		go p.exec(j)
		return
	}
	p.queue = append(p.queue, j)
	pos := len(p.queue)
	p.mu.Unlock()
	j.positioned(pos)
}

// startNow takes a worker for a job that is to run at once, when one is
// free and no job waits or holds a reservation: its run is then saved as running, which spares
// it the write that starts a queued run. The caller then calls begin with
// the job, or unstart when it will not run.
func (p *pool) startNow() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	// Runs that reserved a place come first: they are submitted later and
	// may then queue, and must find the capacity reserve promised them.
	if p.closed || len(p.queue) > 0 || p.reserved > 0 || p.running >= p.maxRunning {
		return false
	}
	p.running++
	return true
}

// begin runs a job on the worker startNow took.
func (p *pool) begin(j *job) { go p.exec(j) }

// unstart gives back the worker startNow took.
func (p *pool) unstart() { p.next() }

func (p *pool) exec(j *job) {
	j.run()
	p.next()
}

// next hands a worker that has become free to the first waiting job, or
// lets it go.
func (p *pool) next() {
	p.mu.Lock()
	if len(p.queue) == 0 {
		p.running--
		p.mu.Unlock()
		return
	}
	next := p.queue[0]
	p.queue[0] = nil
	p.queue = p.queue[1:]
	waiting := append([]*job(nil), p.queue...)
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
	i := slices.Index(p.queue, j)
	if i < 0 {
		p.mu.Unlock()
		return false
	}
	p.queue = slices.Delete(p.queue, i, i+1)
	behind := append([]*job(nil), p.queue[i:]...)
	p.mu.Unlock()
	for k, w := range behind {
		w.positioned(i + k + 1)
	}
	return true
}

// reposition tells each waiting job its new place.
func reposition(waiting []*job) {
	for i, w := range waiting {
		w.positioned(i + 1)
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
	return p.running, len(p.queue)
}
