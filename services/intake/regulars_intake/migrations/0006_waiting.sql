-- Postings accepted before what they depend on arrived (a void before its visit, a visit
-- before its customer, a payment before its invoice): held here, durably, and applied
-- when it arrives. Never dropped; what waits over 7 days is listed (GET /v1/waiting).
CREATE TABLE waiting_events (
    shop_id     uuid NOT NULL,
    -- the event it was accepted as (and will be published as)
    event_id    uuid NOT NULL,
    client_id   text,
    type        text NOT NULL,
    occurred_at timestamptz NOT NULL,
    -- what it waits for: a customer, a repair order or an invoice of the shop
    needs_kind  text NOT NULL CHECK (needs_kind IN ('customer', 'repair_order', 'invoice')),
    needs_id    text NOT NULL,
    -- the posting as accepted: {type, id, occurred_at, data}
    posting     jsonb NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (shop_id, event_id)
);
CREATE INDEX waiting_events_needs ON waiting_events (shop_id, needs_kind, needs_id);
CREATE INDEX waiting_events_age ON waiting_events (shop_id, received_at, event_id);

-- Issued invoices, so that a payment or an overdue notice can find theirs.
CREATE TABLE invoices (
    shop_id     uuid NOT NULL,
    invoice_id  text NOT NULL,
    customer_id text NOT NULL,
    issued_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (shop_id, invoice_id)
);
