-- The outbox: events waiting to be published (and kept for a while after, for replay).
CREATE TABLE outbox (
    id           bigserial PRIMARY KEY,
    event_id     uuid NOT NULL UNIQUE,
    topic        text NOT NULL,
    key          bytea NOT NULL,
    headers      jsonb NOT NULL,
    value        bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz,
    -- the Kafka cluster id it went to: a new cluster (an embedded broker restarted with
    -- an empty log) means everything in the retention window goes out again
    published_to text
);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
CREATE INDEX outbox_created_at ON outbox (created_at);

-- The inbox: ids of events this service has applied, written in the effect's transaction.
CREATE TABLE inbox (
    event_id     uuid PRIMARY KEY,
    type         text NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now()
);

-- What this service parked on its dead-letter topic, for `regulars status` and replay.
CREATE TABLE dead_letters (
    id          bigserial PRIMARY KEY,
    event_id    uuid,
    type        text,
    topic       text NOT NULL,
    part        integer NOT NULL,
    kafka_offset bigint NOT NULL,
    error       text NOT NULL,
    parked_at   timestamptz NOT NULL DEFAULT now(),
    replayed_at timestamptz
);
