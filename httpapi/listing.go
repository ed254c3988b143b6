package httpapi

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/agentstream/agentstream"
)

// Page sizes of the listings (GET /v1/threads, /v1/threads/{id}/runs,
// /v1/threads/{id}/messages with limit or cursor).
const (
	defaultPageLimit = 20
	maxPageLimit     = 100
)

// pageCursor is what a listing's opaque cursor holds: the listing it
// belongs to and the position of the last item of the page before.
type pageCursor struct {
	Kind string `json:"k"`
	// At (unix microseconds) and ID: threads and runs.
	At int64  `json:"t,omitempty"`
	ID string `json:"id,omitempty"`
	// Seq: messages.
	Seq int64 `json:"s,omitempty"`
}

func (c pageCursor) encode() string {
	b, _ := json.Marshal(c) // strings and numbers: cannot fail
	return base64.RawURLEncoding.EncodeToString(b)
}

// pageParams reads limit and cursor from the query: limit 1 to
// maxPageLimit (default defaultPageLimit), cursor one this listing (kind)
// handed out. A bad value is CodeInvalidRequest.
func pageParams(r *http.Request, kind string) (limit int, cursor *pageCursor, err error) {
	q := r.URL.Query()
	limit = defaultPageLimit
	if v := q.Get("limit"); v != "" || q.Has("limit") {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxPageLimit {
			return 0, nil, agentstream.Errorf(agentstream.CodeInvalidRequest,
				"limit must be a whole number from 1 to %d, not %q", maxPageLimit, v)
		}
		limit = n
	}
	if v := q.Get("cursor"); v != "" || q.Has("cursor") {
		c, ok := decodeCursor(v)
		if !ok || c.Kind != kind {
			return 0, nil, agentstream.Errorf(agentstream.CodeInvalidRequest,
				"cursor is not one this listing handed out: pass the next_cursor of the page before, as given")
		}
		cursor = &c
	}
	return limit, cursor, nil
}

func decodeCursor(v string) (pageCursor, bool) {
	b, err := base64.RawURLEncoding.DecodeString(v)
	if err != nil {
		return pageCursor{}, false
	}
	var c pageCursor
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil || dec.More() {
		return pageCursor{}, false
	}
	if c.Kind == "messages" {
		return c, c.Seq >= 0 && c.ID == "" && c.At == 0
	}
	return c, c.ID != "" && agentstream.ValidID(c.ID)
}

func (c *pageCursor) position() *agentstream.ListPosition {
	if c == nil {
		return nil
	}
	return &agentstream.ListPosition{CreatedAt: time.UnixMicro(c.At).UTC(), ID: c.ID}
}

// page is a listing's answer; NextCursor is null on the last page.
type page struct {
	Data       any     `json:"data"`
	NextCursor *string `json:"next_cursor"`
}

func next(c pageCursor) *string {
	s := c.encode()
	return &s
}

func (s *Server) listThreads(w http.ResponseWriter, r *http.Request, user string) {
	limit, cursor, err := pageParams(r, "threads")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	// One more than the page: whether there is a next page.
	threads, err := s.store.ListThreads(r.Context(), user, cursor.position(), limit+1)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := page{}
	if len(threads) > limit {
		threads = threads[:limit]
		last := threads[limit-1]
		out.NextCursor = next(pageCursor{Kind: "threads", At: last.CreatedAt.UnixMicro(), ID: last.ID})
	}
	data := make([]agentstream.Thread, len(threads))
	for i, t := range threads {
		data[i] = shown(t)
	}
	out.Data = data
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) listRuns(w http.ResponseWriter, r *http.Request, user string) {
	limit, cursor, err := pageParams(r, "runs")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	t, err := resolveThread(r.Context(), s.store, user, r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	runs, err := s.store.ListRuns(r.Context(), t.ID, cursor.position(), limit+1)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := page{}
	if len(runs) > limit {
		runs = runs[:limit]
		last := runs[limit-1]
		out.NextCursor = next(pageCursor{Kind: "runs", At: last.CreatedAt.UnixMicro(), ID: last.ID})
	}
	// Runs name their thread by its key, as GET /v1/runs/{id} does.
	out.Data = runs
	writeJSON(w, http.StatusOK, out)
}

// listMessages answers a thread's messages, oldest first: all of them
// when the request names neither limit nor cursor (next_cursor is null),
// else a page.
func (s *Server) listMessages(w http.ResponseWriter, r *http.Request, user string) {
	q := r.URL.Query()
	paged := q.Has("limit") || q.Has("cursor")
	limit, cursor, err := pageParams(r, "messages")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	t, err := resolveThread(r.Context(), s.store, user, r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := page{}
	var msgs []agentstream.Message
	if !paged {
		msgs, err = s.store.ListMessages(r.Context(), t.ID)
	} else {
		var after int64
		if cursor != nil {
			after = cursor.Seq
		}
		msgs, err = s.store.ListMessagesAfter(r.Context(), t.ID, after, limit+1)
		if err == nil && len(msgs) > limit {
			msgs = msgs[:limit]
			out.NextCursor = next(pageCursor{Kind: "messages", Seq: msgs[limit-1].Seq})
		}
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if msgs == nil {
		msgs = []agentstream.Message{}
	}
	out.Data = msgs
	writeJSON(w, http.StatusOK, out)
}

// updateThreadRequest is PATCH /v1/threads/{id}'s body. Agent and Context
// are read only to refuse them: they are fixed when the thread is created.
type updateThreadRequest struct {
	Title    *string         `json:"title"`
	Metadata map[string]any  `json:"metadata"`
	Agent    json.RawMessage `json:"agent"`
	Context  json.RawMessage `json:"context"`
}

func (s *Server) updateThread(w http.ResponseWriter, r *http.Request, user string) {
	var req updateThreadRequest
	if err := s.decodeBody(w, r, &req, true); err != nil {
		s.writeError(w, r, err)
		return
	}
	if req.Agent != nil || req.Context != nil {
		s.writeError(w, r, agentstream.Errorf(agentstream.CodeInvalidRequest,
			"a thread's agent and context are fixed when it is created; a run can override them (agent, context of the run's request)"))
		return
	}
	t, err := resolveThread(r.Context(), s.store, user, r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	t, err = s.store.UpdateThread(r.Context(), user, t.ID, agentstream.ThreadUpdate{
		Title: req.Title, Metadata: req.Metadata, UpdatedAt: timeNow(),
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, shown(t))
}

// maxDeleteAttempts bounds how many times DELETE cancels a run that
// keeps the thread busy: a client starting runs on the thread as fast as
// they are cancelled gets 409 rather than a request that never ends.
const maxDeleteAttempts = 5

// deleteThread deletes the thread with its messages and runs. An active
// run is cancelled first (here, or on the instance running it) and
// waited for, as POST /v1/runs/{id}/cancel does.
func (s *Server) deleteThread(w http.ResponseWriter, r *http.Request, user string) {
	skipBody(w, r)
	t, err := resolveThread(r.Context(), s.store, user, r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	for range maxDeleteAttempts {
		err = s.store.DeleteThread(r.Context(), user, t.ID)
		if !errors.Is(err, agentstream.ErrConflict) {
			break
		}
		// The thread's one queued or running run is its newest.
		runs, lerr := s.store.ListRuns(r.Context(), t.ID, nil, 1)
		if lerr != nil {
			err = lerr
			break
		}
		if len(runs) == 0 || runs[0].Status.Terminal() {
			continue // it ended meanwhile
		}
		if err = s.stopRun(r.Context(), runs[0]); err != nil {
			break
		}
	}
	if err != nil {
		if errors.Is(err, agentstream.ErrConflict) {
			err = agentstream.Wrap(agentstream.CodeConflict, err, "the thread keeps getting new runs; try again")
		}
		s.writeError(w, r, err)
		return
	}
	// Every instance's caches forget it, so a thread made again with the
	// same id starts from nothing. This one's at once; the others' through
	// RemoteForget. The thread is gone all the same when that fails: the
	// caches' time-to-live bounds what an instance that missed it keeps.
	s.ForgetThread(t.ID)
	if s.opts.RemoteForget != nil {
		// Not the client's context: it may leave once the delete is done.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 5*time.Second)
		err := s.opts.RemoteForget(ctx, t.ID)
		cancel()
		if err != nil {
			s.logger.Warn("telling the other instances of a deleted thread", "thread_id", t.ID, "err", err)
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// ForgetThread drops the thread whose key is threadKey (deleted, here or
// on another instance) from this instance's caches: the API's threads and
// the runner's histories.
func (s *Server) ForgetThread(threadKey string) {
	s.threads.drop(threadKey)
	s.runner.ForgetThread(threadKey)
}

// stopRun cancels an active run, here or (RemoteCancel) on the instance
// running it, and waits for its end as POST /v1/runs/{id}/cancel does.
func (s *Server) stopRun(ctx context.Context, run agentstream.Run) error {
	if !s.runner.Cancel(run.ID) && s.opts.RemoteCancel != nil {
		// Another instance runs it (or it is ending right now).
		if err := s.opts.RemoteCancel(ctx, run.ID); err != nil {
			return err
		}
	}
	_, err := s.awaitEnd(ctx, run)
	return err
}
