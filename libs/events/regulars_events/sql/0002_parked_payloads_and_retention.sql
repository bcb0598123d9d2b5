-- A dead letter keeps the record itself, so a replay works after the broker lost its log
-- (the dead-letter topic stays an extra copy for tools). Rows parked before this migration
-- have no payload: replay finds theirs on the dead-letter topic, as it did.
ALTER TABLE dead_letters
    ADD COLUMN record_key     bytea,
    ADD COLUMN record_value   bytea,
    -- [[name, base64 of the value], ...]: header values are bytes, not always text
    ADD COLUMN record_headers jsonb,
    ADD COLUMN attempts       integer,
    ADD COLUMN consumer       text;

-- One waiting dead letter per event: a record redelivered after a crash between the
-- parking and the offset commit is not parked twice. Copies parked twice by the former
-- code (a retried dead-letter send) are the same record; the first one stays.
DELETE FROM dead_letters a USING dead_letters b
 WHERE a.event_id = b.event_id AND a.replayed_at IS NULL AND b.replayed_at IS NULL
   AND a.id > b.id;
CREATE UNIQUE INDEX dead_letters_waiting_event ON dead_letters (event_id)
    WHERE replayed_at IS NULL;
CREATE INDEX dead_letters_replayed_at ON dead_letters (replayed_at)
    WHERE replayed_at IS NOT NULL;

-- An outbox row the broker refuses for good (too large, not authorised) is parked with
-- the broker's error instead of stalling every row behind it.
ALTER TABLE outbox
    ADD COLUMN parked_at  timestamptz,
    ADD COLUMN park_error text;
CREATE INDEX outbox_waiting ON outbox (id) WHERE published_at IS NULL AND parked_at IS NULL;
DROP INDEX outbox_unpublished;
-- retention counts from publication: a row is kept for the retention window after it went
-- out, however long it waited before
CREATE INDEX outbox_published_at ON outbox (published_at) WHERE published_at IS NOT NULL;

-- the inbox is pruned after its retention window (longer than the outbox's, so an event
-- published again within the outbox's retention is still recognised)
CREATE INDEX inbox_processed_at ON inbox (processed_at);
