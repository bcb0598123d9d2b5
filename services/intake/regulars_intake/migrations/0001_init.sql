CREATE TABLE shops (
    id         uuid PRIMARY KEY,
    name       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- The shop's policy, every version kept: a change applies to work scheduled after it.
CREATE TABLE policies (
    shop_id    uuid NOT NULL REFERENCES shops (id),
    version    integer NOT NULL,
    policy     jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (shop_id, version)
);

-- Every event a shop posted, by the shop's own id: the idempotency record.
CREATE TABLE received_events (
    shop_id     uuid NOT NULL,
    client_id   text NOT NULL,
    body_sha256 bytea NOT NULL,
    event_id    uuid NOT NULL,
    type        text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (shop_id, client_id)
);

-- The customer directory.
CREATE TABLE customers (
    shop_id     uuid NOT NULL,
    customer_id text NOT NULL,
    name        text NOT NULL,
    phone       text,
    email       text,
    state       text,
    timezone    text,
    birthday    date,
    consent     jsonb NOT NULL DEFAULT '{}',
    data        jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (shop_id, customer_id)
);

-- Repair orders, so a void or reopen (which carry only the order id) reaches its customer.
CREATE TABLE repair_orders (
    shop_id         uuid NOT NULL,
    repair_order_id text NOT NULL,
    customer_id     text NOT NULL,
    asset_id        text,
    completed_at    timestamptz NOT NULL,
    status          text NOT NULL DEFAULT 'completed',
    PRIMARY KEY (shop_id, repair_order_id)
);
