-- Threads, their messages and their runs.
--
-- Times are INTEGER unix microseconds, UTC. JSON columns (metadata, context,
-- tool_calls) hold a JSON document, or NULL when there is nothing to store.

-- +goose Up
CREATE TABLE threads (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    agent      TEXT NOT NULL,
    title      TEXT NOT NULL,
    metadata   TEXT,
    context    TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE runs (
    id            TEXT PRIMARY KEY,
    thread_id     TEXT NOT NULL REFERENCES threads (id) ON DELETE CASCADE,
    user_id       TEXT NOT NULL,
    agent         TEXT NOT NULL,
    status        TEXT NOT NULL,
    -- error_code is NULL when the run has no error.
    error_code    TEXT,
    error_message TEXT,
    input_tokens  INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    context       TEXT,
    created_at    INTEGER NOT NULL,
    started_at    INTEGER,
    finished_at   INTEGER,
    owner         TEXT NOT NULL DEFAULT '',
    lease_until   INTEGER
);

-- One queued or running run per thread.
CREATE UNIQUE INDEX runs_one_active_per_thread ON runs (thread_id)
    WHERE status IN ('queued', 'running');
-- For recovery: finding queued and running runs.
CREATE INDEX runs_status ON runs (status);

CREATE TABLE messages (
    id           TEXT PRIMARY KEY,
    thread_id    TEXT NOT NULL REFERENCES threads (id) ON DELETE CASCADE,
    run_id       TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq          INTEGER NOT NULL,
    role         TEXT NOT NULL,
    content      TEXT NOT NULL,
    tool_calls   TEXT,
    tool_call_id TEXT NOT NULL DEFAULT '',
    tool_name    TEXT NOT NULL DEFAULT '',
    status       TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    -- Also the index that orders a thread's messages and finds MAX(seq).
    UNIQUE (thread_id, seq)
);

CREATE INDEX messages_run_id ON messages (run_id);

-- +goose Down
DROP TABLE messages;
DROP TABLE runs;
DROP TABLE threads;
