ALTER TABLE customers
    ADD COLUMN consent jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN sms_opted_out_at timestamptz,
    ADD COLUMN awaiting_opt_out_answer boolean NOT NULL DEFAULT false;

-- Every consent change, kept forever: the audit (an SMS opt-out must be kept 10 years in
-- Virginia; we never delete).
CREATE TABLE consent_ledger (
    id          bigserial PRIMARY KEY,
    shop_id     uuid NOT NULL,
    customer_id text NOT NULL,
    channel     text NOT NULL,
    granted     boolean NOT NULL,
    source      text NOT NULL,
    text        text,
    event_id    uuid,
    at          timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX consent_ledger_by_customer ON consent_ledger (shop_id, customer_id, id);

-- Outbound messages: one per customer and purpose (the idempotency key), whatever retries.
CREATE TABLE messages (
    id              uuid PRIMARY KEY,
    shop_id         uuid NOT NULL,
    customer_id     text NOT NULL,
    purpose         text NOT NULL,
    kind            text NOT NULL,
    channel         text,
    priority        integer NOT NULL,
    status          text NOT NULL,   -- scheduled | held | sending | sent | delivered | failed | suppressed | cancelled
    reason          text,
    send_at         timestamptz,
    link            text,
    repair_order_id text,
    context         jsonb NOT NULL DEFAULT '{}',
    provider_id     text,
    attempts        integer NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz,
    UNIQUE (shop_id, customer_id, purpose)
);
CREATE INDEX messages_by_customer ON messages (shop_id, customer_id, created_at);

-- Recovery cases open per customer (from feedback's events): they hold back asks.
CREATE TABLE open_recovery_cases (
    shop_id     uuid NOT NULL,
    customer_id text NOT NULL,
    case_id     text NOT NULL,
    opened_at   timestamptz NOT NULL,
    PRIMARY KEY (shop_id, case_id)
);
CREATE INDEX open_recovery_cases_by_customer ON open_recovery_cases (shop_id, customer_id);
CREATE INDEX messages_by_unsubscribe_token ON messages ((context->>'unsubscribe_token'));
