-- The id a client chose for a thread (POST /v1/chat's thread_id). Such a
-- thread is stored under a key derived from its user and that id
-- (agentstream.ThreadKey), so that ids belong to their users; this column
-- keeps the id to show. NULL for threads the server named, and for threads
-- made before this column, whose id is the key as given.

-- +goose Up
ALTER TABLE threads ADD COLUMN client_id text;

-- +goose Down
ALTER TABLE threads DROP COLUMN client_id;
