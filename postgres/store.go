package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/agentstream/agentstream"
)

// maxAttempts bounds how many times a transaction is run when PostgreSQL
// aborts it for a serialization failure or a deadlock.
const maxAttempts = 3

// CreateThread inserts t. ErrConflict when its ID is taken; ErrInvalid
// when t.Check refuses it.
func (s *Store) CreateThread(ctx context.Context, t agentstream.Thread) error {
	if s.closed.Load() {
		return errClosed()
	}
	if err := t.Check(); err != nil {
		return err
	}
	metadata, err := encodeMap("metadata", t.Metadata)
	if err != nil {
		return err
	}
	threadContext, err := encodeMap("context", t.Context)
	if err != nil {
		return err
	}
	_, err = s.pool.Exec(ctx, `
		INSERT INTO threads (id, client_id, user_id, agent, title, metadata, context, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		t.ID, nullString(t.ClientID), t.UserID, t.Agent, t.Title, metadata, threadContext, ts(t.CreatedAt), ts(t.UpdatedAt))
	return s.mapErr(ctx, "create thread", err)
}

// GetThread returns the thread when it belongs to userID.
func (s *Store) GetThread(ctx context.Context, userID, threadID string) (agentstream.Thread, error) {
	if s.closed.Load() {
		return agentstream.Thread{}, errClosed()
	}
	if !agentstream.ValidText(threadID) || !agentstream.ValidText(userID) {
		return agentstream.Thread{}, errThreadNotFound() // no store can hold it
	}
	t := agentstream.Thread{ID: threadID, UserID: userID}
	var clientID *string
	var metadata, threadContext []byte
	err := s.pool.QueryRow(ctx, `
		SELECT client_id, agent, title, metadata, context, created_at, updated_at
		FROM threads WHERE id = $1 AND user_id = $2`, threadID, userID,
	).Scan(&clientID, &t.Agent, &t.Title, &metadata, &threadContext, &t.CreatedAt, &t.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return agentstream.Thread{}, agentstream.Errorf(agentstream.CodeNotFound, "thread not found")
	}
	if err != nil {
		return agentstream.Thread{}, s.mapErr(ctx, "get thread", err)
	}
	if t.Metadata, err = decodeMap(metadata); err != nil {
		return agentstream.Thread{}, fmt.Errorf("postgres: get thread %s: metadata: %w", threadID, err)
	}
	if t.Context, err = decodeMap(threadContext); err != nil {
		return agentstream.Thread{}, fmt.Errorf("postgres: get thread %s: context: %w", threadID, err)
	}
	if clientID != nil {
		t.ClientID = *clientID
	}
	t.CreatedAt, t.UpdatedAt = t.CreatedAt.UTC(), t.UpdatedAt.UTC()
	return t, nil
}

// ListMessages returns the thread's messages by Seq; an empty non-nil slice
// when there are none (or no such thread).
func (s *Store) ListMessages(ctx context.Context, threadID string) ([]agentstream.Message, error) {
	if s.closed.Load() {
		return nil, errClosed()
	}
	if !agentstream.ValidText(threadID) {
		return []agentstream.Message{}, nil // no store can hold such a thread
	}
	return s.queryMessages(ctx, threadID, `
		SELECT `+messageColumns+`
		FROM messages WHERE thread_id = $1 ORDER BY seq`, threadID)
}

// insertMessage appends a message ($1 id, $2 thread, $3 run, $4 role,
// $5 content, $6 tool calls, $7 tool call ID, $8 tool name, $9 status,
// $10 created) to its thread, after the thread's last message, and returns
// its Seq. The caller holds the thread's row lock, so that no other writer
// takes the same Seq.
const insertMessage = `
	INSERT INTO messages (id, thread_id, run_id, seq, role, content, tool_calls,
		tool_call_id, tool_name, status, created_at)
	VALUES ($1, $2, $3, (SELECT COALESCE(MAX(seq), 0) + 1 FROM messages WHERE thread_id = $2),
		$4, $5, $6, $7, $8, $9, $10)`

// saveMessage is insertMessage, except that a message whose ID exists is
// updated in place (content, tool calls, status) when it belongs to the
// same run, and left alone otherwise: then no row is returned.
const saveMessage = insertMessage + `
	ON CONFLICT (id) DO UPDATE
		SET content = EXCLUDED.content, tool_calls = EXCLUDED.tool_calls, status = EXCLUDED.status
		WHERE messages.run_id = EXCLUDED.run_id
	RETURNING seq`

func messageArgs(m agentstream.Message, toolCalls []byte) []any {
	return []any{m.ID, m.ThreadID, m.RunID, m.Role, m.Content, toolCalls,
		m.ToolCallID, m.ToolName, m.Status, ts(m.CreatedAt)}
}

// CreateRun inserts run and its input message, which it returns with Seq,
// ThreadID and RunID set. The run's Status must be queued or running.
func (s *Store) CreateRun(ctx context.Context, run agentstream.Run, input agentstream.Message, history ...agentstream.Message) (agentstream.Message, error) {
	return s.CreateRunLimited(ctx, run, agentstream.RunLimits{}, input, history...)
}

// CreateRunLimited implements agentstream.Store.
func (s *Store) CreateRunLimited(ctx context.Context, run agentstream.Run, lim agentstream.RunLimits, input agentstream.Message, history ...agentstream.Message) (agentstream.Message, error) {
	return s.createRun(ctx, nil, run, lim, input, history)
}

// CreateThreadRun implements agentstream.Store: the thread's insert goes
// first in the batch that creates the run, in the same round trip.
func (s *Store) CreateThreadRun(ctx context.Context, t agentstream.Thread, run agentstream.Run, lim agentstream.RunLimits, input agentstream.Message, history ...agentstream.Message) (agentstream.Message, error) {
	if s.closed.Load() {
		return agentstream.Message{}, errClosed()
	}
	if err := t.Check(); err != nil {
		return agentstream.Message{}, err
	}
	if run.ThreadID != t.ID || run.UserID != t.UserID {
		return agentstream.Message{}, agentstream.Errorf(agentstream.CodeInvalidRequest,
			"the run (thread %q, user %q) is not of the new thread (%q, user %q)", run.ThreadID, run.UserID, t.ID, t.UserID)
	}
	metadata, err := encodeMap("metadata", t.Metadata)
	if err != nil {
		return agentstream.Message{}, err
	}
	threadContext, err := encodeMap("context", t.Context)
	if err != nil {
		return agentstream.Message{}, err
	}
	return s.createRun(ctx, &pgx.QueuedQuery{
		SQL: `
			INSERT INTO threads (id, client_id, user_id, agent, title, metadata, context, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		// Updated at the run's creation, as the run's insert would leave
		// it: the thread's row is written once, not once more by an
		// UPDATE (a second row version) in the same transaction.
		Arguments: []any{t.ID, nullString(t.ClientID), t.UserID, t.Agent, t.Title, metadata, threadContext, ts(t.CreatedAt), ts(run.CreatedAt)},
	}, run, lim, input, history)
}

// createRun inserts the run, after newThread when it is set.
func (s *Store) createRun(ctx context.Context, newThread *pgx.QueuedQuery, run agentstream.Run, lim agentstream.RunLimits, input agentstream.Message, history []agentstream.Message) (agentstream.Message, error) {
	if run.Status != agentstream.RunQueued && run.Status != agentstream.RunRunning {
		return agentstream.Message{}, agentstream.Errorf(agentstream.CodeInvalidRequest,
			"a new run must be queued or running, not %q", run.Status)
	}
	if err := run.Check(); err != nil {
		return agentstream.Message{}, err
	}
	if err := input.Check(); err != nil {
		return agentstream.Message{}, err
	}
	history = slices.Clone(history)
	histCalls := make([][]byte, len(history))
	for i := range history {
		history[i].ThreadID, history[i].RunID = run.ThreadID, run.ID
		if err := history[i].Check(); err != nil {
			return agentstream.Message{}, err
		}
		calls, err := encodeToolCalls(history[i].ToolCalls)
		if err != nil {
			return agentstream.Message{}, err
		}
		histCalls[i] = calls
	}
	runContext, err := encodeMap("context", run.Context)
	if err != nil {
		return agentstream.Message{}, err
	}
	input.ThreadID, input.RunID = run.ThreadID, run.ID
	toolCalls, err := encodeToolCalls(input.ToolCalls)
	if err != nil {
		return agentstream.Message{}, err
	}
	errCode, errMessage := errorColumns(run.Error)
	err = s.tx(ctx, "create run", func(tx pgx.Tx) error {
		if err := checkRunLimits(ctx, tx, run, lim); err != nil {
			return err
		}
		// One round trip. Updating the thread locks it: CreateRun, and
		// the writes of the thread's messages, wait for one another.
		b := &pgx.Batch{}
		if newThread != nil {
			b.Queue(newThread.SQL, newThread.Arguments...)
		} else {
			b.Queue(`UPDATE threads SET updated_at = $1 WHERE id = $2`, ts(run.CreatedAt), run.ThreadID)
		}
		// The partial unique index runs_one_active_per_thread refuses a
		// second queued or running run on the thread.
		b.Queue(`
			INSERT INTO runs (id, thread_id, user_id, agent, status, error_code, error_message,
				input_tokens, output_tokens, context, created_at, started_at, finished_at,
				owner, lease_until)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)`,
			run.ID, run.ThreadID, run.UserID, run.Agent, run.Status, errCode, errMessage,
			run.Usage.InputTokens, run.Usage.OutputTokens, runContext, ts(run.CreatedAt),
			tsPtr(run.StartedAt), tsPtr(run.FinishedAt), run.Owner, tsPtr(run.LeaseUntil))
		for i, m := range history {
			b.Queue(insertMessage, messageArgs(m, histCalls[i])...)
		}
		b.Queue(insertMessage+` RETURNING seq`, messageArgs(input, toolCalls)...)
		br := tx.SendBatch(ctx, b)
		defer func() { _ = br.Close() }() // a failure is reported by the reads below
		// The thread's insert, or its update (none: no such thread).
		tag, err := br.Exec()
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return agentstream.Errorf(agentstream.CodeNotFound, "thread not found")
		}
		if _, err := br.Exec(); err != nil {
			return err
		}
		for range history {
			if _, err := br.Exec(); err != nil {
				return err
			}
		}
		if err := br.QueryRow().Scan(&input.Seq); err != nil {
			return err
		}
		return br.Close()
	})
	if err != nil {
		return agentstream.Message{}, err
	}
	return input, nil
}

// StartRun marks a queued run running.
func (s *Store) StartRun(ctx context.Context, runID string, at time.Time) error {
	if s.closed.Load() {
		return errClosed()
	}
	if !agentstream.ValidText(runID) {
		return errRunNotFound()
	}
	tag, err := s.pool.Exec(ctx, `
		UPDATE runs SET status = 'running', started_at = $2
		WHERE id = $1 AND status = 'queued'`, runID, ts(at))
	if err != nil {
		return s.mapErr(ctx, "start run", err)
	}
	if tag.RowsAffected() > 0 {
		return nil
	}
	// Not started: say why.
	var status agentstream.RunStatus
	err = s.pool.QueryRow(ctx, `SELECT status FROM runs WHERE id = $1`, runID).Scan(&status)
	if errors.Is(err, pgx.ErrNoRows) {
		return agentstream.Errorf(agentstream.CodeNotFound, "run not found")
	}
	if err != nil {
		return s.mapErr(ctx, "start run", err)
	}
	return agentstream.Errorf(agentstream.CodeConflict, "run is %s, not queued", status)
}

// CheckpointRun saves messages of a running run. ErrNotFound for an unknown
// run, ErrConflict when the run is not running. Messages are saved in the
// run's thread, under the run, whatever their ThreadID and RunID say; an ID
// taken by a message of another run is ErrConflict.
func (s *Store) CheckpointRun(ctx context.Context, runID string, msgs []agentstream.Message) error {
	if !agentstream.ValidText(runID) {
		return errRunNotFound()
	}
	batch, err := messageBatch(msgs)
	if err != nil {
		return err
	}
	return s.tx(ctx, "checkpoint run", func(tx pgx.Tx) error {
		threadID, status, err := lockRun(ctx, tx, runID)
		if err != nil {
			return err
		}
		if status != agentstream.RunRunning {
			return agentstream.Errorf(agentstream.CodeConflict, "run is %s, not running", status)
		}
		return saveMessages(ctx, tx, threadID, runID, batch, nil)
	})
}

// CheckpointText saves more of the text of message m of a running run:
// past 0, one part appended to message_parts in one statement, however
// long the text stored already is (see agentstream.Store).
func (s *Store) CheckpointText(ctx context.Context, runID string, m agentstream.Message, at int64) error {
	if at == 0 {
		return s.CheckpointRun(ctx, runID, []agentstream.Message{m})
	}
	if s.closed.Load() {
		return errClosed()
	}
	if at < 0 {
		return agentstream.Errorf(agentstream.CodeInvalidRequest, "text position %d is negative", at)
	}
	if !agentstream.ValidText(runID) {
		return errRunNotFound()
	}
	if err := agentstream.CheckID("message id", m.ID); err != nil {
		return err
	}
	// The part goes in only while the run is running, to a partial message
	// (readers look for parts of those only), where the message's text
	// ends (its last part's end, or its content's), or over its last part
	// again with a text that extends it or is a prefix of it (a save made
	// again). The run's and the message's rows are share locked: a
	// FinishRun or an interruption under way (which lock the run to update
	// it), or a whole save of the message, is waited for, then the run is
	// seen ended or the message complete and nothing is written, so that
	// no part outlives the save that folds or drops the parts. Why nothing was saved is read only then.
	tag, err := s.pool.Exec(ctx, `
		INSERT INTO message_parts (message_id, pos, text)
		SELECT m.id, $1, $2 FROM messages m JOIN runs r ON r.id = m.run_id
		WHERE m.id = $3 AND r.id = $4 AND r.status = 'running' AND m.status = 'partial' AND (
			$1 = COALESCE(
				(SELECT p.pos + octet_length(p.text) FROM message_parts p
					WHERE p.message_id = m.id ORDER BY p.pos DESC LIMIT 1),
				octet_length(m.content))
			OR $1 = (SELECT p.pos FROM message_parts p WHERE p.message_id = m.id ORDER BY p.pos DESC LIMIT 1))
		FOR SHARE OF r, m
		ON CONFLICT (message_id, pos) DO UPDATE
			SET text = CASE WHEN length(EXCLUDED.text) > length(message_parts.text)
				THEN EXCLUDED.text ELSE message_parts.text END
			WHERE starts_with(EXCLUDED.text, message_parts.text) OR starts_with(message_parts.text, EXCLUDED.text)`,
		at, m.Content, m.ID, runID)
	if err != nil {
		return s.mapErr(ctx, "checkpoint text", err)
	}
	if tag.RowsAffected() > 0 {
		return nil
	}
	var status agentstream.RunStatus
	err = s.pool.QueryRow(ctx, `SELECT status FROM runs WHERE id = $1`, runID).Scan(&status)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return errRunNotFound()
	case err != nil:
		return s.mapErr(ctx, "checkpoint text", err)
	case status != agentstream.RunRunning:
		return agentstream.Errorf(agentstream.CodeConflict, "run is %s, not running", status)
	}
	return agentstream.Errorf(agentstream.CodeConflict,
		"message %s is not a partial message of the run whose text ends at byte %d", m.ID, at)
}

// FinishRun saves msgs and the run's outcome, and clears its owner and
// lease. run.Status must be terminal (ErrInvalid otherwise); ErrNotFound for
// an unknown run, ErrConflict when the stored run is already terminal.
func (s *Store) FinishRun(ctx context.Context, run agentstream.Run, msgs []agentstream.Message) error {
	if !run.Status.Terminal() {
		return agentstream.Errorf(agentstream.CodeInvalidRequest, "run status %q is not terminal", run.Status)
	}
	if !agentstream.ValidText(run.ID) {
		return errRunNotFound()
	}
	batch, err := messageBatch(msgs)
	if err != nil {
		return err
	}
	errCode, errMessage := errorColumns(run.Error)
	return s.tx(ctx, "finish run", func(tx pgx.Tx) error {
		threadID, status, err := lockRun(ctx, tx, run.ID)
		if err != nil {
			return err
		}
		if status.Terminal() {
			return agentstream.Errorf(agentstream.CodeConflict, "run already %s", status)
		}
		return saveMessages(ctx, tx, threadID, run.ID, batch, &pgx.QueuedQuery{
			SQL: `
				UPDATE runs SET status = $2, error_code = $3, error_message = $4,
					input_tokens = $5, output_tokens = $6, finished_at = $7,
					owner = '', lease_until = NULL, end_seq = $8
				WHERE id = $1`,
			Arguments: []any{run.ID, run.Status, errCode, errMessage,
				run.Usage.InputTokens, run.Usage.OutputTokens, tsPtr(run.FinishedAt), nullSeq(run.EndSeq)},
		})
	})
}

// InterruptRuns ends every queued or running run as interrupted, in one
// statement, and returns those runs oldest first.
func (s *Store) InterruptRuns(ctx context.Context, at time.Time, e agentstream.ErrorInfo) ([]agentstream.Run, error) {
	return s.interrupt(ctx, at, e, "")
}

// InterruptExpiredRuns ends as interrupted every queued or running run
// whose lease ran out before at, in one statement, oldest first.
func (s *Store) InterruptExpiredRuns(ctx context.Context, at time.Time, e agentstream.ErrorInfo) ([]agentstream.Run, error) {
	return s.interrupt(ctx, at, e, " AND lease_until IS NOT NULL AND lease_until < $3")
}

// RenewLeases extends the leases of owner's queued and running runs.
func (s *Store) RenewLeases(ctx context.Context, owner string, until time.Time) ([]string, error) {
	if s.closed.Load() {
		return nil, errClosed()
	}
	if !agentstream.ValidText(owner) {
		return []string{}, nil // no run can have this owner
	}
	rows, err := s.leases.Query(ctx, `
		UPDATE runs SET lease_until = $1
		WHERE owner = $2 AND status IN ('queued', 'running')
		RETURNING id`, ts(until), owner)
	if err != nil {
		return nil, s.mapErr(ctx, "renew leases", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, s.mapErr(ctx, "renew leases", err)
	}
	if ids == nil {
		ids = []string{}
	}
	return ids, nil
}

// interrupt ends the queued and running runs matching cond (an SQL
// fragment starting with AND; $3 is the time of the interruption).
func (s *Store) interrupt(ctx context.Context, at time.Time, e agentstream.ErrorInfo, cond string) ([]agentstream.Run, error) {
	if s.closed.Load() {
		return nil, errClosed()
	}
	if err := (agentstream.Run{Error: &e}).Check(); err != nil { // the error every run gets
		return nil, err
	}
	var runs []agentstream.Run
	err := pgx.BeginFunc(ctx, s.leases, func(tx pgx.Tx) error {
		// A run that a FinishRun has locked is waited for, then skipped if
		// it ended (READ COMMITTED re-checks the WHERE clause on the new
		// row).
		rows, err := tx.Query(ctx, `
			WITH interrupted AS (
				UPDATE runs SET status = 'interrupted', error_code = $1, error_message = $2,
					finished_at = $3, owner = '', lease_until = NULL
				WHERE status IN ('queued', 'running')`+cond+`
				RETURNING `+runColumns+`
			)
			SELECT `+runColumns+` FROM interrupted ORDER BY created_at, id`,
			e.Code, e.Message, ts(at))
		if err != nil {
			return err
		}
		runs, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (agentstream.Run, error) { return scanRun(row) })
		if err != nil || len(runs) == 0 {
			return err
		}
		// The partial answers of the runs ended keep their text: parts
		// appended by CheckpointText are folded into the content (which
		// drops them), as the end of a run would have saved it. This
		// statement sees every part committed before the runs were
		// locked, and none can come after (CheckpointText share locks the
		// run and finds it ended).
		ids := make([]string, len(runs))
		for i, r := range runs {
			ids[i] = r.ID
		}
		_, err = tx.Exec(ctx, `
			UPDATE messages m SET content = m.content || p.text
			FROM (SELECT message_id, string_agg(text, '' ORDER BY pos) AS text FROM message_parts
				WHERE message_id IN (SELECT id FROM messages WHERE run_id = ANY($1) AND status = 'partial')
				GROUP BY message_id) p
			WHERE m.id = p.message_id`, ids)
		return err
	})
	if err != nil {
		return nil, s.mapErr(ctx, "interrupt runs", err)
	}
	if runs == nil {
		runs = []agentstream.Run{}
	}
	return runs, nil
}

// GetRun returns the run when it belongs to userID.
func (s *Store) GetRun(ctx context.Context, userID, runID string) (agentstream.Run, error) {
	if s.closed.Load() {
		return agentstream.Run{}, errClosed()
	}
	if !agentstream.ValidText(runID) || !agentstream.ValidText(userID) {
		return agentstream.Run{}, errRunNotFound() // no store can hold it
	}
	r, err := scanRun(s.pool.QueryRow(ctx, `
		SELECT `+runColumns+` FROM runs WHERE id = $1 AND user_id = $2`, runID, userID))
	if errors.Is(err, pgx.ErrNoRows) {
		return agentstream.Run{}, agentstream.Errorf(agentstream.CodeNotFound, "run not found")
	}
	if err != nil {
		return agentstream.Run{}, s.mapErr(ctx, "get run", err)
	}
	return r, nil
}

// SetEndSeq records the seq of an ended run's terminal event unless one is
// recorded, and returns the one recorded.
func (s *Store) SetEndSeq(ctx context.Context, runID string, seq int64) (int64, error) {
	if s.closed.Load() {
		return 0, errClosed()
	}
	if seq <= 0 {
		return 0, agentstream.Errorf(agentstream.CodeInvalidRequest, "end seq %d is not positive", seq)
	}
	var stored int64
	err := s.pool.QueryRow(ctx, `
		UPDATE runs SET end_seq = COALESCE(end_seq, $2)
		WHERE id = $1 AND status IN ('completed', 'failed', 'cancelled', 'interrupted')
		RETURNING end_seq`, runID, seq).Scan(&stored)
	if errors.Is(err, pgx.ErrNoRows) {
		var status agentstream.RunStatus
		err = s.pool.QueryRow(ctx, `SELECT status FROM runs WHERE id = $1`, runID).Scan(&status)
		if errors.Is(err, pgx.ErrNoRows) {
			return 0, agentstream.Errorf(agentstream.CodeNotFound, "run not found")
		}
		if err == nil {
			return 0, agentstream.Errorf(agentstream.CodeConflict, "run %s has not ended (%s)", runID, status)
		}
	}
	if err != nil {
		return 0, s.mapErr(ctx, "set end seq", err)
	}
	return stored, nil
}

// nullSeq is a seq column's value: NULL for 0 (not known).
func nullSeq(seq int64) *int64 {
	if seq <= 0 {
		return nil
	}
	return &seq
}

// runColumns are the columns scanRun reads, in its order.
const runColumns = `id, thread_id, user_id, agent, status, error_code, error_message,
	input_tokens, output_tokens, context, created_at, started_at, finished_at, owner, lease_until, end_seq`

func scanRun(row pgx.Row) (agentstream.Run, error) {
	var r agentstream.Run
	var errCode, errMessage *string
	var runContext []byte
	var endSeq *int64
	err := row.Scan(&r.ID, &r.ThreadID, &r.UserID, &r.Agent, &r.Status, &errCode, &errMessage,
		&r.Usage.InputTokens, &r.Usage.OutputTokens, &runContext, &r.CreatedAt,
		&r.StartedAt, &r.FinishedAt, &r.Owner, &r.LeaseUntil, &endSeq)
	if err != nil {
		return agentstream.Run{}, err
	}
	if errCode != nil {
		r.Error = &agentstream.ErrorInfo{Code: agentstream.Code(*errCode)}
		if errMessage != nil {
			r.Error.Message = *errMessage
		}
	}
	if endSeq != nil {
		r.EndSeq = *endSeq
	}
	if r.Context, err = decodeMap(runContext); err != nil {
		return agentstream.Run{}, fmt.Errorf("run %s: context: %w", r.ID, err)
	}
	r.CreatedAt = r.CreatedAt.UTC()
	r.StartedAt, r.FinishedAt, r.LeaseUntil = utcPtr(r.StartedAt), utcPtr(r.FinishedAt), utcPtr(r.LeaseUntil)
	return r, nil
}

// tx runs fn in a transaction (READ COMMITTED). When PostgreSQL aborts the
// transaction for a serialization failure or a deadlock, or it fails before
// reaching the server, it is run again, up to maxAttempts times; fn must
// be safe to run again. Errors are mapped by mapErr.
func (s *Store) tx(ctx context.Context, op string, fn func(tx pgx.Tx) error) error {
	if s.closed.Load() {
		return errClosed()
	}
	var err error
	for attempt := 1; ; attempt++ {
		err = s.tx1(ctx, fn)
		if err == nil || attempt == maxAttempts || ctx.Err() != nil || s.closed.Load() || !retryable(err) {
			break
		}
	}
	return s.mapErr(ctx, op, err)
}

func (s *Store) tx1(ctx context.Context, fn func(tx pgx.Tx) error) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback(ctx) // fn's error is the one to report
		return err
	}
	return tx.Commit(ctx)
}

// lockRun locks the run's thread, then the run (always in this order, so
// that writers cannot deadlock), and returns the run's thread and status;
// ErrNotFound when there is no such run. Locking the thread serialises the
// writers of its messages; locking the run keeps its status until commit.
func lockRun(ctx context.Context, tx pgx.Tx, runID string) (threadID string, status agentstream.RunStatus, err error) {
	b := &pgx.Batch{}
	b.Queue(`
		SELECT id FROM threads WHERE id = (SELECT thread_id FROM runs WHERE id = $1)
		FOR NO KEY UPDATE`, runID)
	b.Queue(`SELECT thread_id, status FROM runs WHERE id = $1 FOR NO KEY UPDATE`, runID)
	br := tx.SendBatch(ctx, b)
	defer func() { _ = br.Close() }() // a failure is reported by the reads below
	if _, err := br.Exec(); err != nil {
		return "", "", err
	}
	err = br.QueryRow().Scan(&threadID, &status)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", "", agentstream.Errorf(agentstream.CodeNotFound, "run not found")
	}
	if err != nil {
		return "", "", err
	}
	return threadID, status, br.Close()
}

// encodedMessage is a message with its tool calls encoded.
type encodedMessage struct {
	agentstream.Message
	toolCalls []byte
}

// messageBatch encodes the messages a run saves, refusing the IDs no
// store can hold. The rest of such a message is the model's or a tool's,
// and not checked here.
func messageBatch(msgs []agentstream.Message) ([]encodedMessage, error) {
	out := make([]encodedMessage, len(msgs))
	for i, m := range msgs {
		if err := agentstream.CheckID("message id", m.ID); err != nil {
			return nil, err
		}
		toolCalls, err := encodeToolCalls(m.ToolCalls)
		if err != nil {
			return nil, err
		}
		out[i] = encodedMessage{m, toolCalls}
	}
	return out, nil
}

// saveMessages updates the run's messages whose ID exists (content, tool
// calls, status) and appends the others to the thread, in order, then runs
// after (if not nil): all in one round trip. A message is always saved in
// the run's thread and under the run, whatever its ThreadID and RunID say;
// an ID taken by a message of another run is ErrConflict. The caller holds
// the thread's lock (lockRun).
func saveMessages(ctx context.Context, tx pgx.Tx, threadID, runID string, msgs []encodedMessage, after *pgx.QueuedQuery) error {
	if len(msgs) == 0 && after == nil {
		return nil
	}
	b := &pgx.Batch{}
	for _, m := range msgs {
		m.ThreadID, m.RunID = threadID, runID
		b.Queue(saveMessage, messageArgs(m.Message, m.toolCalls)...)
	}
	if after != nil {
		b.Queue(after.SQL, after.Arguments...)
	}
	br := tx.SendBatch(ctx, b)
	defer func() { _ = br.Close() }() // a failure is reported by the reads below
	for _, m := range msgs {
		var seq int64
		err := br.QueryRow().Scan(&seq)
		if errors.Is(err, pgx.ErrNoRows) {
			return agentstream.Errorf(agentstream.CodeConflict, "message %s belongs to another run", m.ID)
		}
		if err != nil {
			return err
		}
	}
	if after != nil {
		if _, err := br.Exec(); err != nil {
			return err
		}
	}
	return br.Close()
}

func errThreadNotFound() error {
	return agentstream.Errorf(agentstream.CodeNotFound, "thread not found")
}

func errRunNotFound() error { return agentstream.Errorf(agentstream.CodeNotFound, "run not found") }

// nullString is s, or NULL when it is empty.
func nullString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func errorColumns(e *agentstream.ErrorInfo) (code, message *string) {
	if e == nil {
		return nil, nil
	}
	c := string(e.Code)
	return &c, &e.Message
}

// ts is t as stored: truncated to the microsecond, timestamptz's precision
// (PostgreSQL rounds a finer time given as text; truncating here makes the
// stored instant not depend on how the driver sends it), in UTC.
func ts(t time.Time) time.Time { return t.Truncate(time.Microsecond).UTC() }

func tsPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	v := ts(*t)
	return &v
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	v := t.UTC()
	return &v
}

// encodeMap returns m as JSON, or nil (NULL) when it has no entries.
func encodeMap(field string, m map[string]any) ([]byte, error) {
	if len(m) == 0 {
		return nil, nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, agentstream.Wrap(agentstream.CodeInvalidRequest, err, field+" is not representable as JSON")
	}
	return b, nil
}

func decodeMap(b []byte) (map[string]any, error) {
	if b == nil {
		return nil, nil
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	if len(m) == 0 {
		return nil, nil
	}
	return m, nil
}

func encodeToolCalls(calls []agentstream.ToolCall) ([]byte, error) {
	if len(calls) == 0 {
		return nil, nil
	}
	b, err := json.Marshal(calls)
	if err != nil {
		return nil, agentstream.Wrap(agentstream.CodeInvalidRequest, err, "tool calls are not representable as JSON")
	}
	return b, nil
}

// userLockClass is the first key of the advisory locks that serialize the
// limit checks of one user's new runs (the second is a hash of the schema
// and the user): two-key locks never meet the migrations' one-key lock.
const userLockClass = 0x4153_4c4d // "ASLM"

// checkRunLimits refuses a new run past the user's limits. The user's
// advisory lock, held until the transaction ends, makes the count and the
// insert that follows one step for every instance: a second CreateRun of
// the user waits here and counts the first's run.
func checkRunLimits(ctx context.Context, tx pgx.Tx, run agentstream.Run, lim agentstream.RunLimits) error {
	if lim.Active <= 0 && lim.Queued <= 0 {
		return nil
	}
	b := &pgx.Batch{}
	b.Queue(`SELECT pg_advisory_xact_lock($1, hashtext(current_schema() || ':' || $2))`, int32(userLockClass), run.UserID)
	b.Queue(`SELECT count(*), count(*) FILTER (WHERE status = 'queued')
		FROM runs WHERE user_id = $1 AND status IN ('queued', 'running')`, run.UserID)
	br := tx.SendBatch(ctx, b)
	defer func() { _ = br.Close() }() // a failure is reported by the reads below
	if _, err := br.Exec(); err != nil {
		return err
	}
	var active, queued int
	if err := br.QueryRow().Scan(&active, &queued); err != nil {
		return err
	}
	if err := br.Close(); err != nil {
		return err
	}
	return lim.Refusal(run, active, queued)
}

// AddUsage implements agentstream.Store.
func (s *Store) AddUsage(ctx context.Context, userID string, at time.Time, tokens int64) error {
	if err := agentstream.CheckUsage(userID, tokens); err != nil {
		return err
	}
	return s.tx(ctx, "add usage", func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `
			INSERT INTO usage (user_id, day, tokens) VALUES ($1, $2::date, $3)
			ON CONFLICT (user_id, day) DO UPDATE SET tokens = usage.tokens + EXCLUDED.tokens`,
			userID, utcDay(at), tokens)
		return err
	})
}

// Usage implements agentstream.Store.
func (s *Store) Usage(ctx context.Context, userID string, at time.Time) (int64, error) {
	if s.closed.Load() {
		return 0, errClosed()
	}
	if !agentstream.ValidText(userID) {
		return 0, nil // no store can hold it
	}
	var n int64
	err := s.pool.QueryRow(ctx, `SELECT tokens FROM usage WHERE user_id = $1 AND day = $2::date`, userID, utcDay(at)).Scan(&n)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, s.mapErr(ctx, "usage", err)
	}
	return n, nil
}

// utcDay is the UTC date that holds t, YYYY-MM-DD.
func utcDay(t time.Time) string { return t.UTC().Format(time.DateOnly) }
