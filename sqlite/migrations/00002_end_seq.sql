-- The seq of a run's terminal event in its event log, recorded with the
-- run's end so that an end rebuilt from the store keeps the id the log gave
-- it. NULL while not known (a run not ended, or ended before this column).

-- +goose Up
ALTER TABLE runs ADD COLUMN end_seq INTEGER;

-- +goose Down
ALTER TABLE runs DROP COLUMN end_seq;
