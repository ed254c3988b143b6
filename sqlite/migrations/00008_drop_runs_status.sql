-- runs_status indexed every run by its status, finished runs included:
-- each run's end moved its entry, one more page in the commit. The
-- queries that look for queued and running runs (InterruptRuns,
-- InterruptExpiredRuns, RenewLeases) read the partial indexes of active
-- runs instead (runs_one_active_per_thread, runs_user_active), which hold
-- only those; TestActiveRunQueriesUseIndexes checks their plans.
-- PostgreSQL never had this index.

-- +goose Up
DROP INDEX runs_status;

-- +goose Down
CREATE INDEX runs_status ON runs (status);
