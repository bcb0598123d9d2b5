-- A thin Jobber webhook answered at once and its item read afterwards (Jobber wants an
-- answer within a second). One row per event however often Jobber re-sends it; a worker
-- on any replica claims due rows under a lease in database time.
CREATE TABLE jobber_fetches (
    id              uuid PRIMARY KEY,
    connector_id    uuid NOT NULL REFERENCES connectors (id),
    shop_id         uuid NOT NULL REFERENCES shops (id),
    topic           text NOT NULL,
    item_id         text NOT NULL,
    -- occurredAt as read; '' when Jobber sent none
    occurred        text NOT NULL,
    payload         jsonb NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now(),
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'done', 'parked')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    lease_until     timestamptz,
    last_error      text,
    finished_at     timestamptz,
    UNIQUE (connector_id, topic, item_id, occurred)
);
CREATE INDEX jobber_fetches_due ON jobber_fetches (next_attempt_at) WHERE status = 'pending';
