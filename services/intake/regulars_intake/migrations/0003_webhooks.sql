-- Outbound webhooks: a shop's subscriptions and one delivery per (subscription, event).
-- Secrets are stored encrypted (REGULARS_WEBHOOK_SECRET_KEY), never in the clear.
CREATE TABLE webhooks (
    id uuid PRIMARY KEY,
    shop_id uuid NOT NULL,
    url text NOT NULL,
    event_types text[] NOT NULL,
    description text NOT NULL DEFAULT '',
    secret bytea NOT NULL,
    previous_secret bytea,
    previous_secret_until timestamptz,
    enabled boolean NOT NULL DEFAULT true,
    disabled_reason text,
    -- the first failure of the current streak: five days of it switch the endpoint off
    failing_since timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhooks_by_shop ON webhooks (shop_id, created_at);
CREATE INDEX webhooks_by_event_type ON webhooks USING gin (event_types) WHERE enabled;

CREATE TABLE webhook_deliveries (
    id uuid PRIMARY KEY,
    webhook_id uuid NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    shop_id uuid NOT NULL,
    event_id uuid NOT NULL,
    event_type text NOT NULL,
    -- the CloudEvent in structured mode, as every try sends it
    body jsonb NOT NULL,
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts integer NOT NULL DEFAULT 0,
    -- tries since the last (re)start of the retry ladder: a replay starts it again
    ladder integer NOT NULL DEFAULT 0,
    last_status_code integer,
    last_error text,
    last_attempt_at timestamptz,
    next_attempt_at timestamptz,
    -- a replica holding a try: no other sends it until this passes (database time)
    lease_until timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    delivered_at timestamptz,
    UNIQUE (webhook_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (webhook_id, created_at, id);
