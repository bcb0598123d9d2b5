-- Each customer's standing: the facts their stage and risk are decided from (facts, as
-- the domain's CustomerStanding keeps them), and what was decided, in columns to filter on.
-- A customer's events come on several topics at once; a row is made (stage still null)
-- before it is locked, so two of them for a new customer queue instead of both writing.
CREATE TABLE customers (
    shop_id              uuid NOT NULL,
    customer_id          text NOT NULL,
    name                 text,
    phone                text,
    phone_digits         text,
    email                text,
    facts                jsonb NOT NULL DEFAULT '{}',
    stage                text,
    stage_since          timestamptz,
    stage_reason         text NOT NULL DEFAULT '',
    next_change_at       timestamptz,
    risk_score           double precision NOT NULL DEFAULT 0,
    risk_reasons         jsonb NOT NULL DEFAULT '[]',
    risk_model           text NOT NULL DEFAULT 'rules',
    p_alive              double precision,
    expected_visits_12m  double precision,
    expected_next_visit  timestamptz,
    average_interval_s   double precision,
    at_risk              boolean NOT NULL DEFAULT false,
    visits               integer NOT NULL DEFAULT 0,
    first_visit_at       timestamptz,
    last_visit_at        timestamptz,
    lifetime_value_cents bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (shop_id, customer_id)
);
CREATE INDEX customers_by_stage ON customers (shop_id, stage, customer_id);
CREATE INDEX customers_at_risk ON customers (shop_id, customer_id) WHERE at_risk;
CREATE INDEX customers_by_first_visit ON customers (shop_id, first_visit_at)
    WHERE first_visit_at IS NOT NULL;

-- One row per repair order; only a visit still standing (not voided or reopened) counts.
-- next_at is the customer's next standing visit: a customer is active at t through the
-- last visit before t, which is what retention counts at each boundary in one scan.
CREATE TABLE visits (
    shop_id         uuid NOT NULL,
    repair_order_id text NOT NULL,
    customer_id     text NOT NULL,
    completed_at    timestamptz NOT NULL,
    advisor         text,
    total_cents     bigint,
    promised_at     timestamptz,
    comeback        boolean NOT NULL DEFAULT false,
    standing        boolean NOT NULL DEFAULT true,
    next_at         timestamptz,
    PRIMARY KEY (shop_id, repair_order_id)
);
CREATE INDEX visits_by_time ON visits (shop_id, completed_at)
    INCLUDE (customer_id, next_at, comeback, promised_at, total_cents) WHERE standing;
CREATE INDEX visits_by_customer ON visits (shop_id, customer_id, completed_at, repair_order_id);

-- Every NPS or CSAT answer: survey responses and the score recorded on a follow-up call.
CREATE TABLE answers (
    event_id    uuid PRIMARY KEY,
    shop_id     uuid NOT NULL,
    customer_id text NOT NULL,
    at          timestamptz NOT NULL,
    nps         smallint,
    csat        smallint,
    source      text NOT NULL
);
CREATE INDEX answers_by_time ON answers (shop_id, at) INCLUDE (nps, csat);

CREATE TABLE follow_ups (
    shop_id     uuid NOT NULL,
    task_id     text NOT NULL,
    customer_id text NOT NULL,
    outcome     text NOT NULL CHECK (outcome IN ('completed', 'missed')),
    at          timestamptz NOT NULL,
    PRIMARY KEY (shop_id, task_id)
);
CREATE INDEX follow_ups_by_time ON follow_ups (shop_id, at) INCLUDE (outcome);

-- A recovery case and its SLA: the deadlines it was opened with, and when it met them.
CREATE TABLE cases (
    shop_id         uuid NOT NULL,
    case_id         text NOT NULL,
    customer_id     text NOT NULL,
    severity        text,
    opened_at       timestamptz,
    ack_due_at      timestamptz,
    resolve_due_at  timestamptz,
    acknowledged_at timestamptz,
    resolved_at     timestamptz,
    PRIMARY KEY (shop_id, case_id)
);
CREATE INDEX cases_open ON cases (shop_id, customer_id) WHERE resolved_at IS NULL;

-- An invoice as its events tell it, in any order (paid before issued included).
CREATE TABLE invoices (
    shop_id      uuid NOT NULL,
    invoice_id   text NOT NULL,
    customer_id  text NOT NULL,
    amount_cents bigint NOT NULL,
    due_at       timestamptz NOT NULL,
    issued_at    timestamptz,
    paid_at      timestamptz,
    overdue_at   timestamptz,
    PRIMARY KEY (shop_id, invoice_id)
);
CREATE INDEX invoices_issued ON invoices (shop_id, issued_at)
    INCLUDE (paid_at, due_at, amount_cents) WHERE issued_at IS NOT NULL;

CREATE TABLE plan_events (
    event_id    uuid PRIMARY KEY,
    shop_id     uuid NOT NULL,
    plan_id     text NOT NULL,
    customer_id text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('renewed', 'expired')),
    at          timestamptz NOT NULL
);
CREATE INDEX plan_events_by_time ON plan_events (shop_id, at) INCLUDE (kind);

CREATE TABLE referrals (
    shop_id     uuid NOT NULL,
    referrer_id text NOT NULL,
    referred_id text NOT NULL,
    at          timestamptz NOT NULL,
    PRIMARY KEY (shop_id, referrer_id, referred_id)
);
CREATE INDEX referrals_by_referred ON referrals (shop_id, referred_id);

CREATE TABLE appointments (
    event_id    uuid PRIMARY KEY,
    shop_id     uuid NOT NULL,
    customer_id text NOT NULL,
    starts_at   timestamptz NOT NULL
);
CREATE INDEX appointments_by_customer ON appointments (shop_id, customer_id, starts_at);

-- The shop's visit rhythm (BG/NBD parameters), or why it has none.
CREATE TABLE risk_models (
    shop_id           uuid PRIMARY KEY,
    r                 double precision,
    alpha             double precision,
    a                 double precision,
    b                 double precision,
    log_likelihood    double precision,
    fitted_customers  integer NOT NULL DEFAULT 0,
    note              text,
    fitted_at         timestamptz
);

-- The additive counts of the metrics per shop and UTC hour, so a year's metrics read a few
-- thousand rows instead of every fact. Kept lazily: every write of a fact marks its hour
-- (and the hour it left) in tally_dirty; a metrics read first recounts the marked hours
-- from the facts. A mark is a row of its own (no ON CONFLICT), so a mark committed while a
-- recount runs survives it and is recounted next time.
CREATE TABLE tally_hours (
    shop_id              uuid NOT NULL,
    hour                 bigint NOT NULL,
    visits               bigint NOT NULL,
    comebacks            bigint NOT NULL,
    promised             bigint NOT NULL,
    on_time              bigint NOT NULL,
    revenue_cents        bigint NOT NULL,
    new_customers        bigint NOT NULL,
    new_referred         bigint NOT NULL,
    nps_answers          bigint NOT NULL,
    promoters            bigint NOT NULL,
    detractors           bigint NOT NULL,
    csat_answers         bigint NOT NULL,
    csat_satisfied       bigint NOT NULL,
    follow_ups_completed bigint NOT NULL,
    follow_ups_missed    bigint NOT NULL,
    plans_renewed        bigint NOT NULL,
    plans_expired        bigint NOT NULL,
    PRIMARY KEY (shop_id, hour)
);
CREATE TABLE tally_dirty (
    id      bigserial PRIMARY KEY,
    shop_id uuid NOT NULL,
    hour    bigint NOT NULL
);
CREATE INDEX tally_dirty_by_shop ON tally_dirty (shop_id);

-- How many customers were active at a moment, by lapsed_after, once counted. A change to
-- a visit at time c can change the count only for moments after c: each such change
-- marks its hour in active_dirty (a row of its own, as tally_dirty), and a read first
-- forgets the counts after the earliest mark.
CREATE TABLE active_counts (
    shop_id      uuid NOT NULL,
    at           timestamptz NOT NULL,
    lapsed_after interval NOT NULL,
    customers    bigint NOT NULL,
    PRIMARY KEY (shop_id, at, lapsed_after)
);
CREATE TABLE active_dirty (
    id      bigserial PRIMARY KEY,
    shop_id uuid NOT NULL,
    since   timestamptz NOT NULL
);
CREATE INDEX active_dirty_by_shop ON active_dirty (shop_id);
