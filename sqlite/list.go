package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/agentstream/agentstream"
)

// threadColumns are the columns scanThread reads, in its order.
const threadColumns = `id, client_id, user_id, agent, title, metadata, context, created_at, updated_at`

type scanner interface{ Scan(dest ...any) error }

func scanThread(row scanner) (agentstream.Thread, error) {
	var t agentstream.Thread
	var clientID, metadata, threadContext sql.NullString
	var created, updated int64
	if err := row.Scan(&t.ID, &clientID, &t.UserID, &t.Agent, &t.Title, &metadata, &threadContext, &created, &updated); err != nil {
		return agentstream.Thread{}, err
	}
	var err error
	if t.Metadata, err = decodeMap(metadata); err != nil {
		return agentstream.Thread{}, fmt.Errorf("thread %s: metadata: %w", t.ID, err)
	}
	if t.Context, err = decodeMap(threadContext); err != nil {
		return agentstream.Thread{}, fmt.Errorf("thread %s: context: %w", t.ID, err)
	}
	t.ClientID = clientID.String
	t.CreatedAt, t.UpdatedAt = fromMicros(created), fromMicros(updated)
	return t, nil
}

// runColumns are the columns scanRun reads, in its order.
const runColumns = `id, thread_id, user_id, agent, status, error_code, error_message, input_tokens, output_tokens,
	context, created_at, started_at, finished_at, owner, lease_until, end_seq`

func scanRun(row scanner) (agentstream.Run, error) {
	var r agentstream.Run
	var errCode, errMessage, runContext sql.NullString
	var created int64
	var started, finished, lease, endSeq sql.NullInt64
	if err := row.Scan(&r.ID, &r.ThreadID, &r.UserID, &r.Agent, &r.Status, &errCode, &errMessage, &r.Usage.InputTokens,
		&r.Usage.OutputTokens, &runContext, &created, &started, &finished, &r.Owner, &lease, &endSeq); err != nil {
		return agentstream.Run{}, err
	}
	if errCode.Valid {
		r.Error = &agentstream.ErrorInfo{Code: agentstream.Code(errCode.String), Message: errMessage.String}
	}
	var err error
	if r.Context, err = decodeMap(runContext); err != nil {
		return agentstream.Run{}, fmt.Errorf("run %s: context: %w", r.ID, err)
	}
	r.CreatedAt, r.EndSeq = fromMicros(created), endSeq.Int64
	r.StartedAt, r.FinishedAt, r.LeaseUntil = fromNullMicros(started), fromNullMicros(finished), fromNullMicros(lease)
	return r, nil
}

func errLimit(limit int) error {
	return agentstream.Errorf(agentstream.CodeInvalidRequest, "limit %d is not positive", limit)
}

// ListMessagesAfter returns up to limit messages of the thread after
// afterSeq, by Seq.
func (s *Store) ListMessagesAfter(ctx context.Context, threadID string, afterSeq int64, limit int) ([]agentstream.Message, error) {
	if limit <= 0 {
		return nil, errLimit(limit)
	}
	if !agentstream.ValidText(threadID) {
		return []agentstream.Message{}, nil // no store can hold such a thread
	}
	return s.queryMessages(ctx, threadID, `
		SELECT `+messageColumns+`
		FROM messages WHERE thread_id = ? AND seq > ? ORDER BY seq LIMIT ?`, threadID, afterSeq, limit)
}

// messageColumns are the columns of a message queryMessages reads, from
// messages. A partial message's text is its content followed by the text
// CheckpointText appended to it, read in the same statement, so that a
// reader sees the content and its parts as of one moment; only a partial
// message can have parts, and the others are not looked up.
const messageColumns = `id, run_id, seq, role,
	CASE WHEN status = 'partial' THEN content || COALESCE(
		(SELECT string_agg(p.text, '' ORDER BY p.pos) FROM message_parts p WHERE p.message_id = messages.id), '')
	ELSE content END,
	tool_calls, tool_call_id, tool_name, status, created_at`

// queryMessages runs a query of the thread's messages (messageColumns)
// and returns them, an empty non-nil slice for none.
func (s *Store) queryMessages(ctx context.Context, threadID, query string, args ...any) ([]agentstream.Message, error) {
	rows, err := s.rc.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list messages: %w", err)
	}
	defer func() { _ = rows.Close() }() // Err below reports read failures
	msgs := []agentstream.Message{}
	for rows.Next() {
		m := agentstream.Message{ThreadID: threadID}
		var toolCalls sql.NullString
		var created int64
		if err := rows.Scan(&m.ID, &m.RunID, &m.Seq, &m.Role, &m.Content, &toolCalls,
			&m.ToolCallID, &m.ToolName, &m.Status, &created); err != nil {
			return nil, fmt.Errorf("sqlite: list messages: %w", err)
		}
		if toolCalls.Valid {
			if err := json.Unmarshal([]byte(toolCalls.String), &m.ToolCalls); err != nil {
				return nil, fmt.Errorf("sqlite: list messages: message %s: tool calls: %w", m.ID, err)
			}
		}
		m.CreatedAt = fromMicros(created)
		msgs = append(msgs, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list messages: %w", err)
	}
	return msgs, nil
}

// ListThreads returns up to limit of the user's threads, newest first,
// after the position after.
func (s *Store) ListThreads(ctx context.Context, userID string, after *agentstream.ListPosition, limit int) ([]agentstream.Thread, error) {
	if limit <= 0 {
		return nil, errLimit(limit)
	}
	threads := []agentstream.Thread{}
	if !agentstream.ValidText(userID) {
		return threads, nil // no store can hold such a user's threads
	}
	query, args := `SELECT `+threadColumns+` FROM threads WHERE user_id = ?`, []any{userID}
	if after != nil {
		query += ` AND (created_at < ? OR (created_at = ? AND id < ?))`
		args = append(args, micros(after.CreatedAt), micros(after.CreatedAt), after.ID)
	}
	rows, err := s.rc.QueryContext(ctx, query+` ORDER BY created_at DESC, id DESC LIMIT ?`, append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list threads: %w", err)
	}
	defer func() { _ = rows.Close() }() // Err below reports read failures
	for rows.Next() {
		t, err := scanThread(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: list threads: %w", err)
		}
		threads = append(threads, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list threads: %w", err)
	}
	return threads, nil
}

// ListRuns returns up to limit of the thread's runs, newest first, after
// the position after.
func (s *Store) ListRuns(ctx context.Context, threadID string, after *agentstream.ListPosition, limit int) ([]agentstream.Run, error) {
	if limit <= 0 {
		return nil, errLimit(limit)
	}
	runs := []agentstream.Run{}
	if !agentstream.ValidText(threadID) {
		return runs, nil // no store can hold such a thread
	}
	query, args := `SELECT `+runColumns+` FROM runs WHERE thread_id = ?`, []any{threadID}
	if after != nil {
		query += ` AND (created_at < ? OR (created_at = ? AND id < ?))`
		args = append(args, micros(after.CreatedAt), micros(after.CreatedAt), after.ID)
	}
	rows, err := s.rc.QueryContext(ctx, query+` ORDER BY created_at DESC, id DESC LIMIT ?`, append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list runs: %w", err)
	}
	defer func() { _ = rows.Close() }() // Err below reports read failures
	for rows.Next() {
		r, err := scanRun(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: list runs: %w", err)
		}
		runs = append(runs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list runs: %w", err)
	}
	return runs, nil
}

// UpdateThread replaces the thread's title, merges its metadata and sets
// its UpdatedAt, in one transaction, and returns it as stored.
func (s *Store) UpdateThread(ctx context.Context, userID, threadID string, u agentstream.ThreadUpdate) (agentstream.Thread, error) {
	if !agentstream.ValidText(threadID) || !agentstream.ValidText(userID) {
		return agentstream.Thread{}, errThreadNotFound() // no store can hold it
	}
	var out agentstream.Thread
	err := s.write(ctx, "update thread", func(tx wtx) error {
		t, err := scanThread(tx.QueryRowContext(ctx, `SELECT `+threadColumns+` FROM threads WHERE id = ? AND user_id = ?`, threadID, userID))
		if errors.Is(err, sql.ErrNoRows) {
			return errThreadNotFound()
		}
		if err != nil {
			return err
		}
		t = u.Apply(t)
		if err := t.Check(); err != nil {
			return err
		}
		metadata, err := encodeMap("metadata", t.Metadata)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE threads SET title = ?, metadata = ?, updated_at = ? WHERE id = ?`,
			t.Title, metadata, micros(t.UpdatedAt), threadID); err != nil {
			return err
		}
		out = t
		return nil
	})
	if err != nil {
		return agentstream.Thread{}, err
	}
	// As GetThread reads it back: metadata through JSON, times to the microsecond.
	return s.GetThread(ctx, userID, out.ID)
}

// DeleteThread deletes the thread, its messages and its runs, unless it
// has an active run.
func (s *Store) DeleteThread(ctx context.Context, userID, threadID string) error {
	if !agentstream.ValidText(threadID) || !agentstream.ValidText(userID) {
		return errThreadNotFound() // no store can hold it
	}
	return s.write(ctx, "delete thread", func(tx wtx) error {
		var id string
		err := tx.QueryRowContext(ctx, `SELECT id FROM threads WHERE id = ? AND user_id = ?`, threadID, userID).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			return errThreadNotFound()
		}
		if err != nil {
			return err
		}
		var active string
		err = tx.QueryRowContext(ctx, `
			SELECT id FROM runs WHERE thread_id = ? AND status IN ('queued', 'running') LIMIT 1`, threadID).Scan(&active)
		switch {
		case err == nil:
			return agentstream.Errorf(agentstream.CodeConflict, "thread has an active run %s; cancel it first", active)
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		for _, q := range []string{
			`DELETE FROM messages WHERE thread_id = ?`,
			`DELETE FROM runs WHERE thread_id = ?`,
			`DELETE FROM threads WHERE id = ?`,
		} {
			if _, err := tx.ExecContext(ctx, q, threadID); err != nil {
				return err
			}
		}
		return nil
	})
}
