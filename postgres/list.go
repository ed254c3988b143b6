package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/agentstream/agentstream"
)

// threadColumns are the columns scanThread reads, in its order.
const threadColumns = `id, client_id, user_id, agent, title, metadata, context, created_at, updated_at`

func scanThread(row pgx.Row) (agentstream.Thread, error) {
	var t agentstream.Thread
	var clientID *string
	var metadata, threadContext []byte
	if err := row.Scan(&t.ID, &clientID, &t.UserID, &t.Agent, &t.Title, &metadata, &threadContext, &t.CreatedAt, &t.UpdatedAt); err != nil {
		return agentstream.Thread{}, err
	}
	var err error
	if t.Metadata, err = decodeMap(metadata); err != nil {
		return agentstream.Thread{}, fmt.Errorf("thread %s: metadata: %w", t.ID, err)
	}
	if t.Context, err = decodeMap(threadContext); err != nil {
		return agentstream.Thread{}, fmt.Errorf("thread %s: context: %w", t.ID, err)
	}
	if clientID != nil {
		t.ClientID = *clientID
	}
	t.CreatedAt, t.UpdatedAt = t.CreatedAt.UTC(), t.UpdatedAt.UTC()
	return t, nil
}

func errLimit(limit int) error {
	return agentstream.Errorf(agentstream.CodeInvalidRequest, "limit %d is not positive", limit)
}

// ListMessagesAfter returns up to limit messages of the thread after
// afterSeq, by Seq.
func (s *Store) ListMessagesAfter(ctx context.Context, threadID string, afterSeq int64, limit int) ([]agentstream.Message, error) {
	if s.closed.Load() {
		return nil, errClosed()
	}
	if limit <= 0 {
		return nil, errLimit(limit)
	}
	if !agentstream.ValidText(threadID) {
		return []agentstream.Message{}, nil // no store can hold such a thread
	}
	return s.queryMessages(ctx, threadID, `
		SELECT `+messageColumns+`
		FROM messages WHERE thread_id = $1 AND seq > $2 ORDER BY seq LIMIT $3`, threadID, afterSeq, limit)
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
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, s.mapErr(ctx, "list messages", err)
	}
	defer rows.Close()
	msgs := []agentstream.Message{}
	for rows.Next() {
		m := agentstream.Message{ThreadID: threadID}
		var toolCalls []byte
		if err := rows.Scan(&m.ID, &m.RunID, &m.Seq, &m.Role, &m.Content, &toolCalls,
			&m.ToolCallID, &m.ToolName, &m.Status, &m.CreatedAt); err != nil {
			return nil, s.mapErr(ctx, "list messages", err)
		}
		if toolCalls != nil {
			if err := json.Unmarshal(toolCalls, &m.ToolCalls); err != nil {
				return nil, fmt.Errorf("postgres: list messages: message %s: tool calls: %w", m.ID, err)
			}
			if len(m.ToolCalls) == 0 {
				m.ToolCalls = nil
			}
		}
		m.CreatedAt = m.CreatedAt.UTC()
		msgs = append(msgs, m)
	}
	if err := rows.Err(); err != nil {
		return nil, s.mapErr(ctx, "list messages", err)
	}
	return msgs, nil
}

// ListThreads returns up to limit of the user's threads, newest first,
// after the position after.
func (s *Store) ListThreads(ctx context.Context, userID string, after *agentstream.ListPosition, limit int) ([]agentstream.Thread, error) {
	if s.closed.Load() {
		return nil, errClosed()
	}
	if limit <= 0 {
		return nil, errLimit(limit)
	}
	threads := []agentstream.Thread{}
	if !agentstream.ValidText(userID) {
		return threads, nil // no store can hold such a user's threads
	}
	query, args := `SELECT `+threadColumns+` FROM threads WHERE user_id = $1`, []any{userID, limit}
	if after != nil {
		// A row comparison, which the index (user_id, created_at, id) serves.
		query += ` AND (created_at, id) < ($3, $4)`
		args = append(args, ts(after.CreatedAt), after.ID)
	}
	rows, err := s.pool.Query(ctx, query+` ORDER BY created_at DESC, id DESC LIMIT $2`, args...)
	if err != nil {
		return nil, s.mapErr(ctx, "list threads", err)
	}
	defer rows.Close()
	for rows.Next() {
		t, err := scanThread(rows)
		if err != nil {
			return nil, s.mapErr(ctx, "list threads", err)
		}
		threads = append(threads, t)
	}
	if err := rows.Err(); err != nil {
		return nil, s.mapErr(ctx, "list threads", err)
	}
	return threads, nil
}

// ListRuns returns up to limit of the thread's runs, newest first, after
// the position after.
func (s *Store) ListRuns(ctx context.Context, threadID string, after *agentstream.ListPosition, limit int) ([]agentstream.Run, error) {
	if s.closed.Load() {
		return nil, errClosed()
	}
	if limit <= 0 {
		return nil, errLimit(limit)
	}
	runs := []agentstream.Run{}
	if !agentstream.ValidText(threadID) {
		return runs, nil // no store can hold such a thread
	}
	query, args := `SELECT `+runColumns+` FROM runs WHERE thread_id = $1`, []any{threadID, limit}
	if after != nil {
		query += ` AND (created_at, id) < ($3, $4)`
		args = append(args, ts(after.CreatedAt), after.ID)
	}
	rows, err := s.pool.Query(ctx, query+` ORDER BY created_at DESC, id DESC LIMIT $2`, args...)
	if err != nil {
		return nil, s.mapErr(ctx, "list runs", err)
	}
	defer rows.Close()
	for rows.Next() {
		r, err := scanRun(rows)
		if err != nil {
			return nil, s.mapErr(ctx, "list runs", err)
		}
		runs = append(runs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, s.mapErr(ctx, "list runs", err)
	}
	return runs, nil
}

// UpdateThread replaces the thread's title, merges its metadata and sets
// its UpdatedAt, in one transaction (the thread's row locked meanwhile),
// and returns it as stored.
func (s *Store) UpdateThread(ctx context.Context, userID, threadID string, u agentstream.ThreadUpdate) (agentstream.Thread, error) {
	if s.closed.Load() {
		return agentstream.Thread{}, errClosed()
	}
	if !agentstream.ValidText(threadID) || !agentstream.ValidText(userID) {
		return agentstream.Thread{}, errThreadNotFound() // no store can hold it
	}
	var out agentstream.Thread
	err := s.tx(ctx, "update thread", func(tx pgx.Tx) error {
		t, err := scanThread(tx.QueryRow(ctx, `
			SELECT `+threadColumns+` FROM threads WHERE id = $1 AND user_id = $2 FOR NO KEY UPDATE`, threadID, userID))
		if errors.Is(err, pgx.ErrNoRows) {
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
		if _, err := tx.Exec(ctx, `UPDATE threads SET title = $2, metadata = $3, updated_at = $4 WHERE id = $1`,
			threadID, t.Title, metadata, ts(t.UpdatedAt)); err != nil {
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
// has an active run. The thread's row is locked first, as CreateRun and
// the writers of its messages lock it, so that no run starts meanwhile.
func (s *Store) DeleteThread(ctx context.Context, userID, threadID string) error {
	if s.closed.Load() {
		return errClosed()
	}
	if !agentstream.ValidText(threadID) || !agentstream.ValidText(userID) {
		return errThreadNotFound() // no store can hold it
	}
	return s.tx(ctx, "delete thread", func(tx pgx.Tx) error {
		var id string
		err := tx.QueryRow(ctx, `SELECT id FROM threads WHERE id = $1 AND user_id = $2 FOR UPDATE`, threadID, userID).Scan(&id)
		if errors.Is(err, pgx.ErrNoRows) {
			return errThreadNotFound()
		}
		if err != nil {
			return err
		}
		var active string
		err = tx.QueryRow(ctx, `
			SELECT id FROM runs WHERE thread_id = $1 AND status IN ('queued', 'running') LIMIT 1`, threadID).Scan(&active)
		switch {
		case err == nil:
			return agentstream.Errorf(agentstream.CodeConflict, "thread has an active run %s; cancel it first", active)
		case !errors.Is(err, pgx.ErrNoRows):
			return err
		}
		b := &pgx.Batch{}
		b.Queue(`DELETE FROM messages WHERE thread_id = $1`, threadID)
		b.Queue(`DELETE FROM runs WHERE thread_id = $1`, threadID)
		b.Queue(`DELETE FROM threads WHERE id = $1`, threadID)
		return tx.SendBatch(ctx, b).Close()
	})
}
