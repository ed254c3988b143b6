package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/agentstream/agentstream"
)

// CreateThread inserts t. ErrConflict when its ID is taken; ErrInvalid
// when t.Check refuses it.
func (s *Store) CreateThread(ctx context.Context, t agentstream.Thread) error {
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
	return s.write(ctx, "create thread", func(tx wtx) error {
		return insertThread(ctx, tx, t, metadata, threadContext)
	})
}

// insertThread inserts t, whose metadata and context are encoded.
func insertThread(ctx context.Context, tx wtx, t agentstream.Thread, metadata, threadContext sql.NullString) error {
	_, err := tx.ExecContext(ctx, `
		INSERT INTO threads (id, client_id, user_id, agent, title, metadata, context, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		t.ID, nullString(t.ClientID), t.UserID, t.Agent, t.Title, metadata, threadContext,
		micros(t.CreatedAt), micros(t.UpdatedAt))
	if isUniqueViolation(err) {
		return agentstream.Wrap(agentstream.CodeConflict, err, "thread already exists")
	}
	return err
}

// GetThread returns the thread when it belongs to userID.
func (s *Store) GetThread(ctx context.Context, userID, threadID string) (agentstream.Thread, error) {
	if !agentstream.ValidText(threadID) || !agentstream.ValidText(userID) {
		return agentstream.Thread{}, errThreadNotFound() // no store can hold it
	}
	t := agentstream.Thread{ID: threadID, UserID: userID}
	var clientID, metadata, threadContext sql.NullString
	var created, updated int64
	err := s.rc.QueryRowContext(ctx, `
		SELECT client_id, agent, title, metadata, context, created_at, updated_at
		FROM threads WHERE id = ? AND user_id = ?`, threadID, userID,
	).Scan(&clientID, &t.Agent, &t.Title, &metadata, &threadContext, &created, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return agentstream.Thread{}, agentstream.Errorf(agentstream.CodeNotFound, "thread not found")
	}
	if err != nil {
		return agentstream.Thread{}, fmt.Errorf("sqlite: get thread: %w", err)
	}
	if t.Metadata, err = decodeMap(metadata); err != nil {
		return agentstream.Thread{}, fmt.Errorf("sqlite: get thread %s: metadata: %w", threadID, err)
	}
	if t.Context, err = decodeMap(threadContext); err != nil {
		return agentstream.Thread{}, fmt.Errorf("sqlite: get thread %s: context: %w", threadID, err)
	}
	t.ClientID = clientID.String
	t.CreatedAt, t.UpdatedAt = fromMicros(created), fromMicros(updated)
	return t, nil
}

// ListMessages returns the thread's messages by Seq; an empty non-nil slice
// when there are none (or no such thread).
func (s *Store) ListMessages(ctx context.Context, threadID string) ([]agentstream.Message, error) {
	if !agentstream.ValidText(threadID) {
		return []agentstream.Message{}, nil // no store can hold such a thread
	}
	return s.queryMessages(ctx, threadID, `
		SELECT `+messageColumns+`
		FROM messages WHERE thread_id = ? ORDER BY seq`, threadID)
}

// CreateRun inserts run and its input message, which it returns with Seq,
// ThreadID and RunID set. The run's Status must be queued or running.
func (s *Store) CreateRun(ctx context.Context, run agentstream.Run, input agentstream.Message, history ...agentstream.Message) (agentstream.Message, error) {
	return s.CreateRunLimited(ctx, run, agentstream.RunLimits{}, input, history...)
}

// CreateRunLimited implements agentstream.Store. SQLite has one writer:
// the count and the insert in one write transaction are one step.
func (s *Store) CreateRunLimited(ctx context.Context, run agentstream.Run, lim agentstream.RunLimits, input agentstream.Message, history ...agentstream.Message) (agentstream.Message, error) {
	c, err := newRunCreation(run, lim, input, history)
	if err != nil {
		return agentstream.Message{}, err
	}
	if err := s.write(ctx, "create run", func(tx wtx) error { return c.insert(ctx, tx) }); err != nil {
		return agentstream.Message{}, err
	}
	return c.input, nil
}

// CreateThreadRun implements agentstream.Store: the thread and the run in
// one write transaction.
func (s *Store) CreateThreadRun(ctx context.Context, t agentstream.Thread, run agentstream.Run, lim agentstream.RunLimits, input agentstream.Message, history ...agentstream.Message) (agentstream.Message, error) {
	if err := checkThreadRun(t, run); err != nil {
		return agentstream.Message{}, err
	}
	metadata, err := encodeMap("metadata", t.Metadata)
	if err != nil {
		return agentstream.Message{}, err
	}
	threadContext, err := encodeMap("context", t.Context)
	if err != nil {
		return agentstream.Message{}, err
	}
	c, err := newRunCreation(run, lim, input, history)
	if err != nil {
		return agentstream.Message{}, err
	}
	// The thread is inserted as the run's insert would leave it (updated
	// at the run's creation), so that nothing updates the row just
	// written; and it has no messages yet.
	t.UpdatedAt, c.newThread = run.CreatedAt, true
	err = s.write(ctx, "create thread and run", func(tx wtx) error {
		if err := insertThread(ctx, tx, t, metadata, threadContext); err != nil {
			return err
		}
		return c.insert(ctx, tx)
	})
	if err != nil {
		return agentstream.Message{}, err
	}
	return c.input, nil
}

// checkThreadRun checks a new thread and its first run go together.
func checkThreadRun(t agentstream.Thread, run agentstream.Run) error {
	if err := t.Check(); err != nil {
		return err
	}
	if run.ThreadID != t.ID || run.UserID != t.UserID {
		return agentstream.Errorf(agentstream.CodeInvalidRequest,
			"the run (thread %q, user %q) is not of the new thread (%q, user %q)", run.ThreadID, run.UserID, t.ID, t.UserID)
	}
	return nil
}

// runCreation is a run to insert, checked and with its columns encoded.
type runCreation struct {
	run                   agentstream.Run
	lim                   agentstream.RunLimits
	input                 agentstream.Message
	history               []agentstream.Message
	histCalls             []sql.NullString
	runContext, toolCalls sql.NullString
	errCode, errMessage   sql.NullString
	// newThread is set when the thread is inserted in the same
	// transaction, with the run's time as its updated_at.
	newThread bool
}

func newRunCreation(run agentstream.Run, lim agentstream.RunLimits, input agentstream.Message, history []agentstream.Message) (*runCreation, error) {
	if run.Status != agentstream.RunQueued && run.Status != agentstream.RunRunning {
		return nil, agentstream.Errorf(agentstream.CodeInvalidRequest,
			"a new run must be queued or running, not %q", run.Status)
	}
	if err := run.Check(); err != nil {
		return nil, err
	}
	if err := input.Check(); err != nil {
		return nil, err
	}
	history = slices.Clone(history)
	histCalls := make([]sql.NullString, len(history))
	for i := range history {
		history[i].ThreadID, history[i].RunID = run.ThreadID, run.ID
		if err := history[i].Check(); err != nil {
			return nil, err
		}
		calls, err := encodeToolCalls(history[i].ToolCalls)
		if err != nil {
			return nil, err
		}
		histCalls[i] = calls
	}
	runContext, err := encodeMap("context", run.Context)
	if err != nil {
		return nil, err
	}
	input.ThreadID, input.RunID = run.ThreadID, run.ID
	toolCalls, err := encodeToolCalls(input.ToolCalls)
	if err != nil {
		return nil, err
	}
	var errCode, errMessage sql.NullString
	if run.Error != nil {
		errCode = sql.NullString{String: string(run.Error.Code), Valid: true}
		errMessage = sql.NullString{String: run.Error.Message, Valid: true}
	}
	return &runCreation{run: run, lim: lim, input: input, history: history, histCalls: histCalls,
		runContext: runContext, toolCalls: toolCalls, errCode: errCode, errMessage: errMessage}, nil
}

// insert writes the run, its history and its input, whose Seq it sets.
func (c *runCreation) insert(ctx context.Context, tx wtx) error {
	run, lim := c.run, c.lim
	if lim.Active > 0 || lim.Queued > 0 {
		var active, queued int
		if err := tx.QueryRowContext(ctx, `
			SELECT count(*), count(CASE WHEN status = 'queued' THEN 1 END)
			FROM runs WHERE user_id = ? AND status IN ('queued', 'running')`,
			run.UserID).Scan(&active, &queued); err != nil {
			return err
		}
		if err := lim.Refusal(run, active, queued); err != nil {
			return err
		}
	}
	// The thread's messages are numbered from its last one; a new
	// thread has none.
	var seq int64
	if !c.newThread {
		res, err := tx.ExecContext(ctx, `UPDATE threads SET updated_at = ? WHERE id = ?`,
			micros(run.CreatedAt), run.ThreadID)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return agentstream.Errorf(agentstream.CodeNotFound, "thread not found")
		}
		if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) FROM messages WHERE thread_id = ?`,
			run.ThreadID).Scan(&seq); err != nil {
			return err
		}
	}
	_, err := tx.ExecContext(ctx, `
		INSERT INTO runs (id, thread_id, user_id, agent, status, error_code, error_message,
			input_tokens, output_tokens, context, created_at, started_at, finished_at,
			owner, lease_until)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		run.ID, run.ThreadID, run.UserID, run.Agent, run.Status, c.errCode, c.errMessage,
		run.Usage.InputTokens, run.Usage.OutputTokens, c.runContext, micros(run.CreatedAt),
		nullMicros(run.StartedAt), nullMicros(run.FinishedAt), run.Owner, nullMicros(run.LeaseUntil))
	if isUniqueViolation(err) {
		// The index runs_one_active_per_thread refuses a second
		// active run on the thread; only then is it read, to name it.
		var active string
		switch aerr := tx.QueryRowContext(ctx, `
			SELECT id FROM runs WHERE thread_id = ? AND status IN ('queued', 'running') LIMIT 1`,
			run.ThreadID).Scan(&active); {
		case aerr == nil:
			return agentstream.Wrap(agentstream.CodeConflict, err, "thread already has an active run "+active)
		case !errors.Is(aerr, sql.ErrNoRows):
			return aerr
		}
		return agentstream.Wrap(agentstream.CodeConflict, err, "run already exists")
	}
	if err != nil {
		return err
	}
	for i, m := range c.history {
		seq++
		if err := insertMessage(ctx, tx, m, seq, c.histCalls[i]); err != nil {
			return err
		}
	}
	c.input.Seq = seq + 1
	return insertMessage(ctx, tx, c.input, c.input.Seq, c.toolCalls)
}

// StartRun marks a queued run running.
func (s *Store) StartRun(ctx context.Context, runID string, at time.Time) error {
	if !agentstream.ValidText(runID) {
		return errRunNotFound()
	}
	return s.write(ctx, "start run", func(tx wtx) error {
		_, status, err := runState(ctx, tx, runID)
		if err != nil {
			return err
		}
		if status != agentstream.RunQueued {
			return agentstream.Errorf(agentstream.CodeConflict, "run is %s, not queued", status)
		}
		_, err = tx.ExecContext(ctx, `UPDATE runs SET status = ?, started_at = ? WHERE id = ?`,
			agentstream.RunRunning, micros(at), runID)
		return err
	})
}

// CheckpointRun saves messages of a running run. ErrNotFound for an unknown
// run, ErrConflict when the run is not running. Messages are saved in the
// run's thread, under the run, whatever their ThreadID and RunID say.
func (s *Store) CheckpointRun(ctx context.Context, runID string, msgs []agentstream.Message) error {
	if !agentstream.ValidText(runID) {
		return errRunNotFound()
	}
	if err := checkMessageIDs(msgs); err != nil {
		return err
	}
	encoded := make([]sql.NullString, len(msgs))
	for i, m := range msgs {
		calls, err := encodeToolCalls(m.ToolCalls)
		if err != nil {
			return err
		}
		encoded[i] = calls
	}
	return s.write(ctx, "checkpoint run", func(tx wtx) error {
		if len(msgs) == 0 {
			return checkRunning(ctx, tx, runID)
		}
		for i, m := range msgs {
			// One statement a message: saved only while the run is
			// running, in its thread; why nothing was saved is read only
			// then.
			var seq int64
			err := tx.QueryRowContext(ctx, `
				INSERT INTO messages (id, thread_id, run_id, seq, role, content, tool_calls,
					tool_call_id, tool_name, status, created_at)
				SELECT ?, r.thread_id, r.id,
					(SELECT COALESCE(MAX(seq), 0) + 1 FROM messages WHERE thread_id = r.thread_id),
					?, ?, ?, ?, ?, ?, ?
				FROM runs r WHERE r.id = ? AND r.status = 'running'
				ON CONFLICT (id) DO UPDATE
					SET content = excluded.content, tool_calls = excluded.tool_calls, status = excluded.status
					WHERE messages.run_id = excluded.run_id
				RETURNING seq`,
				m.ID, m.Role, m.Content, encoded[i], m.ToolCallID, m.ToolName, m.Status, micros(m.CreatedAt), runID,
			).Scan(&seq)
			switch {
			case errors.Is(err, sql.ErrNoRows):
				if err := checkRunning(ctx, tx, runID); err != nil {
					return err
				}
				return agentstream.Errorf(agentstream.CodeConflict, "message %s belongs to another run", m.ID)
			case isUniqueViolation(err):
				return agentstream.Wrap(agentstream.CodeConflict, err, "message already exists")
			case err != nil:
				return err
			}
		}
		return nil
	})
}

// CheckpointText saves more of the text of message m of a running run:
// past 0, one part appended to message_parts, however long the text
// stored already is (see agentstream.Store).
func (s *Store) CheckpointText(ctx context.Context, runID string, m agentstream.Message, at int64) error {
	if at == 0 {
		return s.CheckpointRun(ctx, runID, []agentstream.Message{m})
	}
	if at < 0 {
		return errNegativeAt(at)
	}
	if !agentstream.ValidText(runID) {
		return errRunNotFound()
	}
	if err := agentstream.CheckID("message id", m.ID); err != nil {
		return err
	}
	return s.write(ctx, "checkpoint text", func(tx wtx) error {
		// One statement: the part goes in only while the run is running,
		// to a partial message (readers look for parts of those only),
		// where the message's text ends (its last part's end, or its
		// content's), or over its last part again with a text that
		// extends it or is a prefix of it (a save made again). Why nothing was saved is read only then.
		res, err := tx.ExecContext(ctx, `
			INSERT INTO message_parts (message_id, pos, text)
			SELECT m.id, ?1, ?2 FROM messages m JOIN runs r ON r.id = m.run_id
			WHERE m.id = ?3 AND r.id = ?4 AND r.status = 'running' AND m.status = 'partial' AND (
				?1 = COALESCE(
					(SELECT p.pos + length(CAST(p.text AS BLOB)) FROM message_parts p
						WHERE p.message_id = m.id ORDER BY p.pos DESC LIMIT 1),
					length(CAST(m.content AS BLOB)))
				OR ?1 = (SELECT p.pos FROM message_parts p WHERE p.message_id = m.id ORDER BY p.pos DESC LIMIT 1))
			ON CONFLICT (message_id, pos) DO UPDATE
				SET text = CASE WHEN length(excluded.text) > length(message_parts.text)
					THEN excluded.text ELSE message_parts.text END
				WHERE substr(excluded.text, 1, length(message_parts.text)) = message_parts.text
					OR substr(message_parts.text, 1, length(excluded.text)) = excluded.text`,
			at, m.Content, m.ID, runID)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n > 0 {
			return err
		}
		if err := checkRunning(ctx, tx, runID); err != nil {
			return err
		}
		return errNotAppendable(m.ID, at)
	})
}

// errNegativeAt is CheckpointText's error for a negative position.
func errNegativeAt(at int64) error {
	return agentstream.Errorf(agentstream.CodeInvalidRequest, "text position %d is negative", at)
}

// errNotAppendable is CheckpointText's error when its message is not a
// partial message of the run, or its stored text does not end at at.
func errNotAppendable(msgID string, at int64) error {
	return agentstream.Errorf(agentstream.CodeConflict,
		"message %s is not a partial message of the run whose text ends at byte %d", msgID, at)
}

// checkRunning is ErrNotFound for an unknown run, ErrConflict for one that
// is not running.
func checkRunning(ctx context.Context, tx wtx, runID string) error {
	_, status, err := runState(ctx, tx, runID)
	if err != nil {
		return err
	}
	if status != agentstream.RunRunning {
		return agentstream.Errorf(agentstream.CodeConflict, "run is %s, not running", status)
	}
	return nil
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
	if err := checkMessageIDs(msgs); err != nil {
		return err
	}
	var errCode, errMessage sql.NullString
	if run.Error != nil {
		errCode = sql.NullString{String: string(run.Error.Code), Valid: true}
		errMessage = sql.NullString{String: run.Error.Message, Valid: true}
	}
	return s.write(ctx, "finish run", func(tx wtx) error {
		// The run is ended first, only if it has not ended, which also
		// reads its thread: one statement where a read and a write were.
		// Its messages follow in the same transaction.
		var threadID string
		err := tx.QueryRowContext(ctx, `
			UPDATE runs SET status = ?, error_code = ?, error_message = ?,
				input_tokens = ?, output_tokens = ?, finished_at = ?,
				owner = '', lease_until = NULL, end_seq = ?
			WHERE id = ? AND status IN ('queued', 'running')
			RETURNING thread_id`,
			run.Status, errCode, errMessage, run.Usage.InputTokens, run.Usage.OutputTokens,
			nullMicros(run.FinishedAt), nullSeq(run.EndSeq), run.ID).Scan(&threadID)
		if errors.Is(err, sql.ErrNoRows) {
			// Not ended here: say why.
			_, status, err := runState(ctx, tx, run.ID)
			if err != nil {
				return err
			}
			return agentstream.Errorf(agentstream.CodeConflict, "run already %s", status)
		}
		if err != nil {
			return err
		}
		return saveMessages(ctx, tx, threadID, run.ID, msgs)
	})
}

// InterruptRuns ends every queued or running run as interrupted.
func (s *Store) InterruptRuns(ctx context.Context, at time.Time, e agentstream.ErrorInfo) ([]agentstream.Run, error) {
	return s.interrupt(ctx, at, e, "")
}

// InterruptExpiredRuns ends as interrupted every queued or running run
// whose lease ran out before at.
func (s *Store) InterruptExpiredRuns(ctx context.Context, at time.Time, e agentstream.ErrorInfo) ([]agentstream.Run, error) {
	return s.interrupt(ctx, at, e, ` AND lease_until IS NOT NULL AND lease_until < ?`, micros(at))
}

// RenewLeases extends the leases of owner's queued and running runs.
func (s *Store) RenewLeases(ctx context.Context, owner string, until time.Time) ([]string, error) {
	ids := []string{}
	if !agentstream.ValidText(owner) {
		return ids, nil // no run can have this owner
	}
	err := s.write(ctx, "renew leases", func(tx wtx) error {
		ids = ids[:0]
		rows, err := tx.QueryContext(ctx, `
			UPDATE runs SET lease_until = ?
			WHERE owner = ? AND status IN ('queued', 'running')
			RETURNING id`, micros(until), owner)
		if err != nil {
			return err
		}
		defer func() { _ = rows.Close() }() // the scan or iteration error is the one to report
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				return err
			}
			ids = append(ids, id)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	return ids, nil
}

// interrupt ends the queued and running runs matching the extra condition
// (an SQL fragment starting with AND, with its arguments).
func (s *Store) interrupt(ctx context.Context, at time.Time, e agentstream.ErrorInfo, cond string, condArgs ...any) ([]agentstream.Run, error) {
	if err := (agentstream.Run{Error: &e}).Check(); err != nil { // the error every run gets
		return nil, err
	}
	var ids []idAndUser
	err := s.write(ctx, "interrupt runs", func(tx wtx) error {
		ids = ids[:0]
		rows, err := tx.QueryContext(ctx, `SELECT id, user_id FROM runs WHERE status IN ('queued', 'running')`+cond+` ORDER BY created_at, id`, condArgs...)
		if err != nil {
			return err
		}
		for rows.Next() {
			var r idAndUser
			if err := rows.Scan(&r.id, &r.user); err != nil {
				_ = rows.Close() // the scan error is the one to report
				return err
			}
			ids = append(ids, r)
		}
		if err := rows.Close(); err != nil {
			return err
		}
		args := append([]any{agentstream.RunInterrupted, e.Code, e.Message, micros(at)}, condArgs...)
		_, err = tx.ExecContext(ctx, `
			UPDATE runs SET status = ?, error_code = ?, error_message = ?, finished_at = ?,
				owner = '', lease_until = NULL
			WHERE status IN ('queued', 'running')`+cond, args...)
		if err != nil || len(ids) == 0 {
			return err
		}
		// The partial answers of the runs ended keep their text: parts
		// appended by CheckpointText are folded into the content (which
		// drops them), as the end of a run would have saved it.
		_, err = tx.ExecContext(ctx, `
			UPDATE messages SET content = content || (
				SELECT string_agg(p.text, '' ORDER BY p.pos) FROM message_parts p WHERE p.message_id = messages.id)
			WHERE id IN (
				SELECT p.message_id FROM message_parts p
				CROSS JOIN messages m ON m.id = p.message_id CROSS JOIN runs r ON r.id = m.run_id
				WHERE r.status = 'interrupted' AND m.status = 'partial')`)
		return err
	})
	if err != nil {
		return nil, err
	}
	// The runs are ended: the caller must learn which even if ctx ends
	// now, or it appends no terminal event to their logs (a read of rows
	// just written is short).
	ctx = context.WithoutCancel(ctx)
	runs := make([]agentstream.Run, 0, len(ids))
	for _, r := range ids {
		run, err := s.GetRun(ctx, r.user, r.id)
		if errors.Is(err, agentstream.ErrNotFound) {
			continue // deleted with its thread since: no one to tell
		}
		if err != nil {
			return nil, err
		}
		runs = append(runs, run)
	}
	return runs, nil
}

type idAndUser struct{ id, user string }

// SetEndSeq records the seq of an ended run's terminal event unless one is
// recorded, and returns the one recorded.
func (s *Store) SetEndSeq(ctx context.Context, runID string, seq int64) (int64, error) {
	if seq <= 0 {
		return 0, agentstream.Errorf(agentstream.CodeInvalidRequest, "end seq %d is not positive", seq)
	}
	var stored int64
	err := s.write(ctx, "set end seq", func(tx wtx) error {
		var status agentstream.RunStatus
		var cur sql.NullInt64
		err := tx.QueryRowContext(ctx, `SELECT status, end_seq FROM runs WHERE id = ?`, runID).Scan(&status, &cur)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return agentstream.Errorf(agentstream.CodeNotFound, "run not found")
		case err != nil:
			return err
		case !status.Terminal():
			return agentstream.Errorf(agentstream.CodeConflict, "run %s has not ended (%s)", runID, status)
		case cur.Valid:
			stored = cur.Int64
			return nil
		}
		stored = seq
		_, err = tx.ExecContext(ctx, `UPDATE runs SET end_seq = ? WHERE id = ?`, seq, runID)
		return err
	})
	if err != nil {
		return 0, err
	}
	return stored, nil
}

// nullSeq is a seq column's value: NULL for 0 (not known).
func nullSeq(seq int64) sql.NullInt64 { return sql.NullInt64{Int64: seq, Valid: seq > 0} }

// GetRun returns the run when it belongs to userID.
func (s *Store) GetRun(ctx context.Context, userID, runID string) (agentstream.Run, error) {
	if !agentstream.ValidText(runID) || !agentstream.ValidText(userID) {
		return agentstream.Run{}, errRunNotFound() // no store can hold it
	}
	r := agentstream.Run{ID: runID, UserID: userID}
	var errCode, errMessage, runContext sql.NullString
	var created int64
	var started, finished, lease, endSeq sql.NullInt64
	err := s.rc.QueryRowContext(ctx, `
		SELECT thread_id, agent, status, error_code, error_message, input_tokens, output_tokens,
			context, created_at, started_at, finished_at, owner, lease_until, end_seq
		FROM runs WHERE id = ? AND user_id = ?`, runID, userID,
	).Scan(&r.ThreadID, &r.Agent, &r.Status, &errCode, &errMessage, &r.Usage.InputTokens,
		&r.Usage.OutputTokens, &runContext, &created, &started, &finished, &r.Owner, &lease, &endSeq)
	if errors.Is(err, sql.ErrNoRows) {
		return agentstream.Run{}, agentstream.Errorf(agentstream.CodeNotFound, "run not found")
	}
	if err != nil {
		return agentstream.Run{}, fmt.Errorf("sqlite: get run: %w", err)
	}
	if errCode.Valid {
		r.Error = &agentstream.ErrorInfo{Code: agentstream.Code(errCode.String), Message: errMessage.String}
	}
	if r.Context, err = decodeMap(runContext); err != nil {
		return agentstream.Run{}, fmt.Errorf("sqlite: get run %s: context: %w", runID, err)
	}
	r.CreatedAt, r.EndSeq = fromMicros(created), endSeq.Int64
	r.StartedAt, r.FinishedAt, r.LeaseUntil = fromNullMicros(started), fromNullMicros(finished), fromNullMicros(lease)
	return r, nil
}

// write runs fn in a transaction on the write connection. Errors that are
// not already *agentstream.Error are reported as "sqlite: op: …", except
// unique-constraint failures, which become ErrConflict.
func (s *Store) write(ctx context.Context, op string, fn func(tx wtx) error) error {
	err := s.tx(ctx, fn)
	var e *agentstream.Error
	switch {
	case err == nil, errors.As(err, &e):
		return err
	case isUniqueViolation(err):
		return agentstream.Wrap(agentstream.CodeConflict, err, "already exists")
	}
	return fmt.Errorf("sqlite: %s: %w", op, err)
}

func (s *Store) tx(ctx context.Context, fn func(tx wtx) error) error {
	return s.batch.do(ctx, fn)
}

// runState returns a run's thread and status; ErrNotFound when there is no
// such run.
func runState(ctx context.Context, tx wtx, runID string) (threadID string, status agentstream.RunStatus, err error) {
	err = tx.QueryRowContext(ctx, `SELECT thread_id, status FROM runs WHERE id = ?`, runID).Scan(&threadID, &status)
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", agentstream.Errorf(agentstream.CodeNotFound, "run not found")
	}
	return threadID, status, err
}

// saveMessages updates the run's messages whose ID exists (content, tool
// calls, status) and appends the others to the thread. A message is always
// saved in the run's thread and under the run, whatever its ThreadID and
// RunID say; an ID taken by a message of another run is ErrConflict.
func saveMessages(ctx context.Context, tx wtx, threadID, runID string, msgs []agentstream.Message) error {
	for _, m := range msgs {
		m.ThreadID, m.RunID = threadID, runID
		toolCalls, err := encodeToolCalls(m.ToolCalls)
		if err != nil {
			return err
		}
		// One statement: appended, or updated in place when the ID is
		// the run's own message; no row when it is another run's.
		var seq int64
		err = tx.QueryRowContext(ctx, `
			INSERT INTO messages (id, thread_id, run_id, seq, role, content, tool_calls,
				tool_call_id, tool_name, status, created_at)
			VALUES (?, ?, ?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM messages WHERE thread_id = ?),
				?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (id) DO UPDATE
				SET content = excluded.content, tool_calls = excluded.tool_calls, status = excluded.status
				WHERE messages.run_id = excluded.run_id
			RETURNING seq`,
			m.ID, m.ThreadID, m.RunID, m.ThreadID, m.Role, m.Content, toolCalls,
			m.ToolCallID, m.ToolName, m.Status, micros(m.CreatedAt),
		).Scan(&seq)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return agentstream.Errorf(agentstream.CodeConflict, "message %s belongs to another run", m.ID)
		case isUniqueViolation(err):
			return agentstream.Wrap(agentstream.CodeConflict, err, "message already exists")
		case err != nil:
			return err
		}
	}
	return nil
}

// insertMessage appends m, whose tool calls are encoded as toolCalls, to
// its thread as message seq. The caller numbers the messages it inserts
// from the thread's last (the one writer makes that safe): one read of
// the thread's last seq per run, none for a new thread, instead of one
// per message.
func insertMessage(ctx context.Context, tx wtx, m agentstream.Message, seq int64, toolCalls sql.NullString) error {
	_, err := tx.ExecContext(ctx, `
		INSERT INTO messages (id, thread_id, run_id, seq, role, content, tool_calls,
			tool_call_id, tool_name, status, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		m.ID, m.ThreadID, m.RunID, seq, m.Role, m.Content, toolCalls,
		m.ToolCallID, m.ToolName, m.Status, micros(m.CreatedAt))
	if isUniqueViolation(err) {
		return agentstream.Wrap(agentstream.CodeConflict, err, "message already exists")
	}
	return err
}

func errThreadNotFound() error {
	return agentstream.Errorf(agentstream.CodeNotFound, "thread not found")
}

func errRunNotFound() error { return agentstream.Errorf(agentstream.CodeNotFound, "run not found") }

// checkMessageIDs refuses the IDs no store can hold. The rest of a message
// a run saves is the model's or a tool's, and not checked here.
func checkMessageIDs(msgs []agentstream.Message) error {
	for _, m := range msgs {
		if err := agentstream.CheckID("message id", m.ID); err != nil {
			return err
		}
	}
	return nil
}

// nullString is s, or NULL when it is empty.
func nullString(s string) sql.NullString { return sql.NullString{String: s, Valid: s != ""} }

func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(v int64) time.Time { return time.UnixMicro(v).UTC() }

func nullMicros(t *time.Time) sql.NullInt64 {
	if t == nil {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixMicro(), Valid: true}
}

func fromNullMicros(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := fromMicros(v.Int64)
	return &t
}

// encodeMap returns m as JSON, or NULL when it has no entries.
func encodeMap(field string, m map[string]any) (sql.NullString, error) {
	if len(m) == 0 {
		return sql.NullString{}, nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return sql.NullString{}, agentstream.Wrap(agentstream.CodeInvalidRequest, err, field+" is not representable as JSON")
	}
	return sql.NullString{String: string(b), Valid: true}, nil
}

func decodeMap(v sql.NullString) (map[string]any, error) {
	if !v.Valid {
		return nil, nil
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(v.String), &m); err != nil {
		return nil, err
	}
	if len(m) == 0 {
		return nil, nil
	}
	return m, nil
}

func encodeToolCalls(calls []agentstream.ToolCall) (sql.NullString, error) {
	if len(calls) == 0 {
		return sql.NullString{}, nil
	}
	b, err := json.Marshal(calls)
	if err != nil {
		return sql.NullString{}, agentstream.Wrap(agentstream.CodeInvalidRequest, err, "tool calls are not representable as JSON")
	}
	return sql.NullString{String: string(b), Valid: true}, nil
}

// AddUsage implements agentstream.Store.
func (s *Store) AddUsage(ctx context.Context, userID string, at time.Time, tokens int64) error {
	if err := agentstream.CheckUsage(userID, tokens); err != nil {
		return err
	}
	return s.write(ctx, "add usage", func(tx wtx) error {
		_, err := tx.ExecContext(ctx, `
			INSERT INTO usage (user_id, day, tokens) VALUES (?, ?, ?)
			ON CONFLICT (user_id, day) DO UPDATE SET tokens = tokens + excluded.tokens`,
			userID, utcDay(at), tokens)
		return err
	})
}

// Usage implements agentstream.Store.
func (s *Store) Usage(ctx context.Context, userID string, at time.Time) (int64, error) {
	if !agentstream.ValidText(userID) {
		return 0, nil // no store can hold it
	}
	var n int64
	err := s.rc.QueryRowContext(ctx, `SELECT tokens FROM usage WHERE user_id = ? AND day = ?`, userID, utcDay(at)).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("sqlite: usage: %w", err)
	}
	return n, nil
}

// utcDay is the UTC date that holds t, YYYY-MM-DD.
func utcDay(t time.Time) string { return t.UTC().Format(time.DateOnly) }
