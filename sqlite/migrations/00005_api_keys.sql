-- API keys made by `agentstream keys create`: the SHA-256 of each secret
-- (hex), never the secret. A revoked key keeps its row (revoked_at set),
-- so that listings show it and a server that once had keys never goes
-- back to serving the local user.

-- +goose Up
CREATE TABLE api_keys (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    name       TEXT NOT NULL DEFAULT '',
    hash       TEXT NOT NULL UNIQUE,
    hint       TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX api_keys_user_created ON api_keys (user_id, created_at, id);

-- +goose Down
DROP TABLE api_keys;
