-- What a running run's answer gained since its message was last saved
-- whole (Store.CheckpointText): each checkpoint appends a part, the text
-- from byte pos of the message's text on, instead of rewriting the
-- message's content (an update writes a new version of the whole row,
-- TOASTed content included). A message's text is its content followed by
-- its parts in pos order. A whole save rewrites the content and drops the
-- parts (the trigger below); a run ended as interrupted has its parts
-- folded into the content.

-- +goose Up
CREATE TABLE message_parts (
    message_id text NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    pos        bigint NOT NULL,
    text       text NOT NULL,
    PRIMARY KEY (message_id, pos)
);

-- +goose StatementBegin
CREATE FUNCTION message_parts_drop() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM message_parts WHERE message_id = NEW.id;
    RETURN NULL;
END
$$;
-- +goose StatementEnd

CREATE TRIGGER message_parts_dropped AFTER UPDATE OF content ON messages
    FOR EACH ROW EXECUTE FUNCTION message_parts_drop();

-- +goose Down
-- Text appended since the last whole save is folded in first, so that
-- a rollback while a run streams loses none of its answer.
UPDATE messages m SET content = m.content || p.text
FROM (SELECT message_id, string_agg(text, '' ORDER BY pos) AS text FROM message_parts GROUP BY message_id) p
WHERE m.id = p.message_id;
DROP TRIGGER message_parts_dropped ON messages;
DROP FUNCTION message_parts_drop();
DROP TABLE message_parts;
