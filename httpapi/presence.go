package httpapi

import (
	"context"
	"net/http"
	"sync"
	"time"
)

// ReaderPresence records the readers of runs (GET /v1/runs/{id}/events),
// so that a run whose starting client left, with on_disconnect cancel, is
// kept when a reader came to it within runs.disconnect_grace: the client
// reconnecting with Last-Event-ID, or another one. This instance's
// readers are always known; an implementation shared by the instances
// (redislog's Presence) makes those of the others known too.
type ReaderPresence interface {
	// Attach records a reader of runID until release is called.
	Attach(runID string) (release func())
	// Seen reports whether a reader of runID was attached at some time at
	// or after since: attached now, or gone since.
	Seen(ctx context.Context, runID string, since time.Time) (bool, error)
}

// localReaders is the ReaderPresence of this instance's readers. A run's
// record is dropped keep after its last reader left, so it answers Seen
// for a since up to keep ago.
type localReaders struct {
	keep time.Duration
	mu   sync.Mutex
	runs map[string]*runReaders
}

type runReaders struct {
	n    int
	last time.Time // when a reader last attached or left
}

func newLocalReaders(keep time.Duration) *localReaders {
	return &localReaders{keep: keep, runs: make(map[string]*runReaders)}
}

func (l *localReaders) Attach(runID string) (release func()) {
	l.mu.Lock()
	rr := l.runs[runID]
	if rr == nil {
		rr = &runReaders{}
		l.runs[runID] = rr
	}
	rr.n++
	rr.last = time.Now()
	l.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			rr.n--
			rr.last = time.Now()
			if rr.n > 0 {
				return
			}
			left := rr.last
			time.AfterFunc(l.keep, func() {
				l.mu.Lock()
				defer l.mu.Unlock()
				if rr.n == 0 && rr.last.Equal(left) && l.runs[runID] == rr {
					delete(l.runs, runID)
				}
			})
		})
	}
}

func (l *localReaders) Seen(_ context.Context, runID string, since time.Time) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	rr := l.runs[runID]
	return rr != nil && (rr.n > 0 || !rr.last.Before(since)), nil
}

// attached wraps the handler of a run's readers: the reader is recorded
// while it is served. It is recorded before runEvents checks the run is
// the user's, so a request for another user's run (whose ID it would
// have to know) could keep that run from a disconnect cancel, no more.
func (s *Server) attached(h func(http.ResponseWriter, *http.Request, string)) func(http.ResponseWriter, *http.Request, string) {
	return func(w http.ResponseWriter, r *http.Request, user string) {
		id := r.PathValue("id")
		release := s.readers.Attach(id)
		defer release()
		if s.opts.Presence != nil {
			defer s.opts.Presence.Attach(id)()
		}
		h(w, r, user)
	}
}

// cancelAfterGrace cancels a run whose starting client left (on_disconnect
// cancel) once DisconnectGrace has passed, unless a reader came to it
// meanwhile, here or (with Presence) on another instance.
func (s *Server) cancelAfterGrace(runID string) {
	if s.opts.DisconnectGrace < 0 {
		s.runner.Cancel(runID)
		return
	}
	left := time.Now()
	s.graceMu.Lock()
	defer s.graceMu.Unlock()
	if s.graceClosed {
		return
	}
	var t *time.Timer
	t = time.AfterFunc(s.opts.DisconnectGrace, func() {
		s.graceMu.Lock()
		delete(s.graces, t)
		if s.graceClosed {
			s.graceMu.Unlock()
			return
		}
		s.graceRunning.Add(1)
		s.graceMu.Unlock()
		defer s.graceRunning.Done()
		if s.readSince(runID, left) {
			s.logger.Debug("a reader came back within the disconnect grace: the run goes on", "run_id", runID)
			return
		}
		s.runner.Cancel(runID)
	})
	s.graces[t] = struct{}{}
}

// readSince reports whether a reader of the run was attached since the
// given time, here or on another instance.
func (s *Server) readSince(runID string, since time.Time) bool {
	if seen, _ := s.readers.Seen(context.Background(), runID, since); seen || s.opts.Presence == nil {
		return seen
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	seen, err := s.opts.Presence.Seen(ctx, runID, since)
	if err != nil {
		// Not knowing, the run is cancelled, as on_disconnect asked.
		s.logger.Warn("cannot tell whether a run has readers on other instances; it is cancelled as its client left", "run_id", runID, "err", err)
	}
	return seen
}

// Close stops the disconnect graces under way (their runs are not
// cancelled) and waits for those that are ending. The server calls it
// once every run has ended.
func (s *Server) Close() {
	s.graceMu.Lock()
	s.graceClosed = true
	for t := range s.graces {
		t.Stop()
	}
	clear(s.graces)
	s.graceMu.Unlock()
	s.graceRunning.Wait()
}
