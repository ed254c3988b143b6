-- Threads, their messages and their runs.
--
-- Times are timestamptz (microseconds, stored as an instant; the store reads
-- them back in UTC). JSON columns (metadata, context, tool_calls) are jsonb,
-- or NULL when there is nothing to store.
--
-- Tables are created in the connection's current schema (the first schema
-- of search_path that exists), so that one database can hold several
-- stores, one per schema.

-- +goose Up
CREATE TABLE threads (
    id         text PRIMARY KEY,
    user_id    text NOT NULL,
    agent      text NOT NULL,
    title      text NOT NULL,
    metadata   jsonb,
    context    jsonb,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);

CREATE TABLE runs (
    id            text PRIMARY KEY,
    thread_id     text NOT NULL REFERENCES threads (id) ON DELETE CASCADE,
    user_id       text NOT NULL,
    agent         text NOT NULL,
    status        text NOT NULL,
    -- error_code is NULL when the run has no error.
    error_code    text,
    error_message text,
    input_tokens  bigint NOT NULL DEFAULT 0,
    output_tokens bigint NOT NULL DEFAULT 0,
    context       jsonb,
    created_at    timestamptz NOT NULL,
    started_at    timestamptz,
    finished_at   timestamptz,
    owner         text NOT NULL DEFAULT '',
    lease_until   timestamptz
);

-- One queued or running run per thread. Also the index that finds the
-- queued and running runs (InterruptRuns), which are few.
CREATE UNIQUE INDEX runs_one_active_per_thread ON runs (thread_id)
    WHERE status IN ('queued', 'running');

CREATE TABLE messages (
    id           text PRIMARY KEY,
    thread_id    text NOT NULL REFERENCES threads (id) ON DELETE CASCADE,
    run_id       text NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq          bigint NOT NULL,
    role         text NOT NULL,
    content      text NOT NULL,
    tool_calls   jsonb,
    tool_call_id text NOT NULL DEFAULT '',
    tool_name    text NOT NULL DEFAULT '',
    status       text NOT NULL,
    created_at   timestamptz NOT NULL,
    -- Also the index that orders a thread's messages and finds MAX(seq).
    CONSTRAINT messages_thread_seq UNIQUE (thread_id, seq)
);

CREATE INDEX messages_run_id ON messages (run_id);

-- +goose Down
DROP TABLE messages;
DROP TABLE runs;
DROP TABLE threads;
