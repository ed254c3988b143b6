package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/agentstream/agentstream"
)

var _ agentstream.KeyStore = (*Store)(nil)

const keyColumns = `id, user_id, name, hash, hint, created_at, revoked_at`

func scanKey(row pgx.Row) (agentstream.APIKey, error) {
	var k agentstream.APIKey
	if err := row.Scan(&k.ID, &k.UserID, &k.Name, &k.Hash, &k.Hint, &k.CreatedAt, &k.RevokedAt); err != nil {
		return agentstream.APIKey{}, err
	}
	k.CreatedAt, k.RevokedAt = k.CreatedAt.UTC(), utcPtr(k.RevokedAt)
	return k, nil
}

// CreateKey stores k; ErrConflict when its ID or hash is taken.
func (s *Store) CreateKey(ctx context.Context, k agentstream.APIKey) error {
	if s.closed.Load() {
		return errClosed()
	}
	if err := k.Check(); err != nil {
		return err
	}
	_, err := s.pool.Exec(ctx, `
		INSERT INTO api_keys (id, user_id, name, hash, hint, created_at, revoked_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		k.ID, k.UserID, k.Name, k.Hash, k.Hint, ts(k.CreatedAt), tsPtr(k.RevokedAt))
	return s.mapErr(ctx, "create key", err)
}

// ListKeys returns userID's keys (every user's for ""), oldest first.
func (s *Store) ListKeys(ctx context.Context, userID string) ([]agentstream.APIKey, error) {
	if s.closed.Load() {
		return nil, errClosed()
	}
	keys := []agentstream.APIKey{}
	if !agentstream.ValidText(userID) {
		return keys, nil // no store can hold such a user's keys
	}
	query, args := `SELECT `+keyColumns+` FROM api_keys`, []any{}
	if userID != "" {
		query += ` WHERE user_id = $1`
		args = append(args, userID)
	}
	rows, err := s.pool.Query(ctx, query+` ORDER BY created_at, id`, args...)
	if err != nil {
		return nil, s.mapErr(ctx, "list keys", err)
	}
	defer rows.Close()
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			return nil, s.mapErr(ctx, "list keys", err)
		}
		keys = append(keys, k)
	}
	if err := rows.Err(); err != nil {
		return nil, s.mapErr(ctx, "list keys", err)
	}
	return keys, nil
}

// RevokeKey marks the key revoked at at, unless it is already: one
// statement, so two revocations at once agree on the first's time.
func (s *Store) RevokeKey(ctx context.Context, id string, at time.Time) (agentstream.APIKey, error) {
	if s.closed.Load() {
		return agentstream.APIKey{}, errClosed()
	}
	if !agentstream.ValidText(id) {
		return agentstream.APIKey{}, errKeyNotFound(id)
	}
	k, err := scanKey(s.pool.QueryRow(ctx, `
		UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1
		RETURNING `+keyColumns, id, ts(at)))
	if errors.Is(err, pgx.ErrNoRows) {
		return agentstream.APIKey{}, errKeyNotFound(id)
	}
	if err != nil {
		return agentstream.APIKey{}, s.mapErr(ctx, "revoke key", err)
	}
	return k, nil
}

// KeyByHash returns the active key whose hash is hash.
func (s *Store) KeyByHash(ctx context.Context, hash string) (agentstream.APIKey, error) {
	if s.closed.Load() {
		return agentstream.APIKey{}, errClosed()
	}
	if !agentstream.ValidText(hash) {
		return agentstream.APIKey{}, agentstream.Errorf(agentstream.CodeNotFound, "key not found")
	}
	k, err := scanKey(s.pool.QueryRow(ctx, `SELECT `+keyColumns+` FROM api_keys WHERE hash = $1 AND revoked_at IS NULL`, hash))
	if errors.Is(err, pgx.ErrNoRows) {
		return agentstream.APIKey{}, agentstream.Errorf(agentstream.CodeNotFound, "key not found")
	}
	if err != nil {
		return agentstream.APIKey{}, s.mapErr(ctx, "key by hash", err)
	}
	return k, nil
}

// HasKeys reports whether any key, revoked or not, is stored.
func (s *Store) HasKeys(ctx context.Context) (bool, error) {
	if s.closed.Load() {
		return false, errClosed()
	}
	var ok bool
	if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM api_keys)`).Scan(&ok); err != nil {
		return false, s.mapErr(ctx, "has keys", err)
	}
	return ok, nil
}

func errKeyNotFound(id string) error {
	return agentstream.Errorf(agentstream.CodeNotFound, "key %q not found", id)
}
