-- Indexes of the listings: a user's threads newest first (ListThreads) and
-- a thread's runs newest first (ListRuns), each ordered by creation time
-- then id, the order of their cursors. A thread's messages are listed by
-- the UNIQUE (thread_id, seq) index.

-- +goose Up
CREATE INDEX threads_user_created ON threads (user_id, created_at, id);
CREATE INDEX runs_thread_created ON runs (thread_id, created_at, id);

-- +goose Down
DROP INDEX runs_thread_created;
DROP INDEX threads_user_created;
