package agentstream

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"time"
	"unicode"
)

// APIKeyPrefix starts every key NewAPIKey makes, so that a key is
// recognizable in a config, a log or a secret scanner, and so that a
// server asks its store only about credentials that can be stored keys.
const APIKeyPrefix = "ask_"

// MaxKeyNameBytes bounds an APIKey's Name.
const MaxKeyNameBytes = 200

// APIKey is a stored API key: who it is for and when it was made and
// revoked, never its secret. The secret is shown once, when it is made
// (NewAPIKey); the store keeps only its SHA-256.
type APIKey struct {
	// ID names the key in listings and revocations ("key_…"); not a secret.
	ID string
	// UserID is the user the key authenticates as.
	UserID string
	// Name is an optional label, e.g. the machine or person holding it.
	Name string
	// Hash is HashAPIKey of the secret: 64 lowercase hex digits.
	Hash string
	// Hint is the secret's last 4 characters, to tell keys apart.
	Hint string
	// CreatedAt is when the key was made.
	CreatedAt time.Time
	// RevokedAt is when the key was revoked; nil while it is active.
	RevokedAt *time.Time
}

// KeyStore keeps API keys hashed. sqlite.Store and postgres.Store
// implement it beside Store; a server checks bearer credentials against
// it on every request (with a short cache), so a key made or revoked by
// `agentstream keys` takes effect on every instance without a restart.
// Implementations return *Error values, as Store does.
type KeyStore interface {
	// CreateKey stores k. ErrInvalid, with nothing written, when k.Check
	// refuses it; ErrConflict when its ID or Hash is taken.
	CreateKey(ctx context.Context, k APIKey) error
	// ListKeys returns the keys of userID, or of every user when userID
	// is "", revoked ones included, oldest first (by CreatedAt, then ID).
	ListKeys(ctx context.Context, userID string) ([]APIKey, error)
	// RevokeKey marks the key revoked at the given time and returns it as
	// stored. Revoking a revoked key changes nothing and returns it with
	// its first RevokedAt, so a revocation can be retried. ErrNotFound for
	// an unknown ID.
	RevokeKey(ctx context.Context, id string, at time.Time) (APIKey, error)
	// KeyByHash returns the active (not revoked) key whose Hash is hash;
	// ErrNotFound when there is none.
	KeyByHash(ctx context.Context, hash string) (APIKey, error)
	// HasKeys reports whether any key was ever stored, revoked ones
	// included: a server with no identity configured stops serving the
	// local user once one exists, and never goes back.
	HasKeys(ctx context.Context) (bool, error)
}

// NewAPIKey makes a key for userID, labelled name, at now: the secret,
// to show its holder once, and the record to store. The secret is
// APIKeyPrefix and the base64url of 32 bytes of crypto/rand.
func NewAPIKey(userID, name string, now time.Time) (secret string, k APIKey) {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand panics instead)
	secret = APIKeyPrefix + base64.RawURLEncoding.EncodeToString(b)
	return secret, APIKey{
		ID: NewID("key_"), UserID: userID, Name: name, Hash: HashAPIKey(secret),
		Hint: secret[len(secret)-4:], CreatedAt: now.UTC().Truncate(time.Microsecond),
	}
}

// HashAPIKey is the hash a store keeps of a key's secret: the hex of its
// SHA-256. A fast hash is enough, unlike for passwords: a secret from
// NewAPIKey has 256 random bits, so no guess of it, however fast, can
// succeed, and the lookup costs every request only one hash.
func HashAPIKey(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// Check refuses, with ErrInvalid, a key no store may keep: an ID that is
// not an ID, a user that is empty or not printable, a Name over
// MaxKeyNameBytes or not text, a Hash that is not 64 lowercase hex digits.
func (k APIKey) Check() error {
	if k.ID == "" {
		return Errorf(CodeInvalidRequest, "key id is empty")
	}
	if err := checkID("key id", k.ID); err != nil {
		return err
	}
	if err := CheckUserID(k.UserID); err != nil {
		return err
	}
	if len(k.Name) > MaxKeyNameBytes {
		return Errorf(CodeInvalidRequest, "key name is longer than %d bytes", MaxKeyNameBytes)
	}
	if err := checkText("key name", k.Name); err != nil {
		return err
	}
	if err := checkText("key hint", k.Hint); err != nil {
		return err
	}
	if len(k.Hash) != 64 || strings.Trim(k.Hash, "0123456789abcdef") != "" {
		return Errorf(CodeInvalidRequest, "key hash is not a SHA-256 in lowercase hex")
	}
	return nil
}

// CheckUserID refuses, with ErrInvalid, a user id a key cannot name:
// empty, over MaxIDBytes, or holding a character that is not printable
// (a user id ends up in logs and listings).
func CheckUserID(s string) error {
	if s == "" {
		return Errorf(CodeInvalidRequest, "user id is empty")
	}
	if err := checkID("user id", s); err != nil {
		return err
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return Errorf(CodeInvalidRequest, "user id holds a character that is not printable (%U)", r)
		}
	}
	return nil
}
