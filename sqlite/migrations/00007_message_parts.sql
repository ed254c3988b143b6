-- What a running run's answer gained since its message was last saved
-- whole (Store.CheckpointText): each checkpoint appends a part, the text
-- from byte pos of the message's text on, instead of rewriting the
-- message's content (SQLite rewrites a whole record on any update, so
-- `content = content || ?` would not help). A message's text is its
-- content followed by its parts in pos order. A whole save rewrites the
-- content and drops the parts (the trigger below); a run ended as
-- interrupted has its parts folded into the content.

-- +goose Up
CREATE TABLE message_parts (
    message_id TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    pos        INTEGER NOT NULL,
    text       TEXT NOT NULL,
    PRIMARY KEY (message_id, pos)
) WITHOUT ROWID;

-- +goose StatementBegin
CREATE TRIGGER message_parts_dropped AFTER UPDATE OF content ON messages
BEGIN
    DELETE FROM message_parts WHERE message_id = NEW.id;
END;
-- +goose StatementEnd

-- +goose Down
-- Text appended since the last whole save is folded in first, so that
-- a rollback while a run streams loses none of its answer.
UPDATE messages SET content = content || (
    SELECT string_agg(p.text, '' ORDER BY p.pos) FROM message_parts p WHERE p.message_id = messages.id)
WHERE id IN (SELECT message_id FROM message_parts);
DROP TRIGGER message_parts_dropped;
DROP TABLE message_parts;
