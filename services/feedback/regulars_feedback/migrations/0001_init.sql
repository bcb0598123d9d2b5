-- Every customer event this service has seen, in order: the ground its workflows build on.
CREATE TABLE timeline (
    event_id    uuid PRIMARY KEY,
    shop_id     uuid NOT NULL,
    customer_id text NOT NULL,
    type        text NOT NULL,
    occurred_at timestamptz NOT NULL,
    data        jsonb NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX timeline_by_customer ON timeline (shop_id, customer_id, occurred_at);
