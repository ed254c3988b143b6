-- Per-user limits (config limits.*): the tokens each user's model calls
-- used per UTC day (limits.daily_tokens), and an index that counts a
-- user's queued and running runs (limits.concurrent_runs, queued_runs).

-- +goose Up
CREATE TABLE usage (
    user_id text NOT NULL,
    day     date NOT NULL,
    tokens  bigint NOT NULL,
    PRIMARY KEY (user_id, day)
);
CREATE INDEX runs_user_active ON runs (user_id, status)
    WHERE status IN ('queued', 'running');

-- +goose Down
DROP INDEX runs_user_active;
DROP TABLE usage;
