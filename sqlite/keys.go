package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/agentstream/agentstream"
)

var _ agentstream.KeyStore = (*Store)(nil)

const keyColumns = `id, user_id, name, hash, hint, created_at, revoked_at`

func scanKey(row interface{ Scan(...any) error }) (agentstream.APIKey, error) {
	var k agentstream.APIKey
	var created int64
	var revoked sql.NullInt64
	if err := row.Scan(&k.ID, &k.UserID, &k.Name, &k.Hash, &k.Hint, &created, &revoked); err != nil {
		return agentstream.APIKey{}, err
	}
	k.CreatedAt, k.RevokedAt = fromMicros(created), fromNullMicros(revoked)
	return k, nil
}

// CreateKey stores k; ErrConflict when its ID or hash is taken.
func (s *Store) CreateKey(ctx context.Context, k agentstream.APIKey) error {
	if err := k.Check(); err != nil {
		return err
	}
	return s.write(ctx, "create key", func(tx wtx) error {
		_, err := tx.ExecContext(ctx, `
			INSERT INTO api_keys (id, user_id, name, hash, hint, created_at, revoked_at)
			VALUES (?, ?, ?, ?, ?, ?, ?)`,
			k.ID, k.UserID, k.Name, k.Hash, k.Hint, micros(k.CreatedAt), nullMicros(k.RevokedAt))
		if isUniqueViolation(err) {
			return agentstream.Wrap(agentstream.CodeConflict, err, "key already exists")
		}
		return err
	})
}

// ListKeys returns userID's keys (every user's for ""), oldest first.
func (s *Store) ListKeys(ctx context.Context, userID string) ([]agentstream.APIKey, error) {
	keys := []agentstream.APIKey{}
	if !agentstream.ValidText(userID) {
		return keys, nil // no store can hold such a user's keys
	}
	query, args := `SELECT `+keyColumns+` FROM api_keys`, []any{}
	if userID != "" {
		query += ` WHERE user_id = ?`
		args = append(args, userID)
	}
	rows, err := s.rc.QueryContext(ctx, query+` ORDER BY created_at, id`, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list keys: %w", err)
	}
	defer func() { _ = rows.Close() }() // rows.Err reports what matters
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: list keys: %w", err)
		}
		keys = append(keys, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list keys: %w", err)
	}
	return keys, nil
}

// RevokeKey marks the key revoked at at, unless it is already.
func (s *Store) RevokeKey(ctx context.Context, id string, at time.Time) (agentstream.APIKey, error) {
	if !agentstream.ValidText(id) {
		return agentstream.APIKey{}, errKeyNotFound(id)
	}
	var k agentstream.APIKey
	err := s.write(ctx, "revoke key", func(tx wtx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL`, micros(at), id); err != nil {
			return err
		}
		var err error
		k, err = scanKey(tx.QueryRowContext(ctx, `SELECT `+keyColumns+` FROM api_keys WHERE id = ?`, id))
		if errors.Is(err, sql.ErrNoRows) {
			return errKeyNotFound(id)
		}
		return err
	})
	if err != nil {
		return agentstream.APIKey{}, err
	}
	return k, nil
}

// KeyByHash returns the active key whose hash is hash.
func (s *Store) KeyByHash(ctx context.Context, hash string) (agentstream.APIKey, error) {
	if !agentstream.ValidText(hash) {
		return agentstream.APIKey{}, agentstream.Errorf(agentstream.CodeNotFound, "key not found")
	}
	k, err := scanKey(s.rc.QueryRowContext(ctx, `SELECT `+keyColumns+` FROM api_keys WHERE hash = ? AND revoked_at IS NULL`, hash))
	if errors.Is(err, sql.ErrNoRows) {
		return agentstream.APIKey{}, agentstream.Errorf(agentstream.CodeNotFound, "key not found")
	}
	if err != nil {
		return agentstream.APIKey{}, fmt.Errorf("sqlite: key by hash: %w", err)
	}
	return k, nil
}

// HasKeys reports whether any key, revoked or not, is stored.
func (s *Store) HasKeys(ctx context.Context) (bool, error) {
	var n int
	if err := s.rc.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM api_keys)`).Scan(&n); err != nil {
		return false, fmt.Errorf("sqlite: has keys: %w", err)
	}
	return n == 1, nil
}

func errKeyNotFound(id string) error {
	return agentstream.Errorf(agentstream.CodeNotFound, "key %q not found", id)
}
