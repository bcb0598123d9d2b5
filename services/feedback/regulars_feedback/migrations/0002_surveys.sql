-- Surveys: one per visit and reason; the token in the public link is the credential.
CREATE TABLE surveys (
    id              uuid PRIMARY KEY,
    shop_id         uuid NOT NULL,
    customer_id     text NOT NULL,
    repair_order_id text,
    reason          text NOT NULL,
    token           text NOT NULL UNIQUE,
    status          text NOT NULL DEFAULT 'sent',   -- sent | answered | expired
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    UNIQUE (shop_id, customer_id, repair_order_id, reason)
);
CREATE INDEX surveys_by_customer ON surveys (shop_id, customer_id, created_at);
