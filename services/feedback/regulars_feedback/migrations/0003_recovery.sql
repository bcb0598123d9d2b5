-- Visits: what feedback needs to remember of a repair order (its advisor, a comeback).
CREATE TABLE visits (
    shop_id         uuid NOT NULL,
    repair_order_id text NOT NULL,
    customer_id     text NOT NULL,
    advisor         text,
    comeback        boolean NOT NULL DEFAULT false,
    completed_at    timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (shop_id, repair_order_id)
);
CREATE INDEX visits_by_customer ON visits (shop_id, customer_id, completed_at);

-- A re-survey belongs to the case it follows up; a visit can have one per case.
ALTER TABLE surveys ADD COLUMN case_id uuid;
ALTER TABLE surveys DROP CONSTRAINT surveys_shop_id_customer_id_repair_order_id_reason_key;
CREATE UNIQUE INDEX surveys_once ON surveys
    (shop_id, customer_id, coalesce(repair_order_id, ''), reason, coalesce(case_id::text, ''));

-- Survey answers: the first one counts, and its result answers every later submission.
CREATE TABLE responses (
    survey_id   uuid PRIMARY KEY REFERENCES surveys (id),
    shop_id     uuid NOT NULL,
    customer_id text NOT NULL,
    nps         integer CHECK (nps BETWEEN 0 AND 10),
    csat        integer CHECK (csat BETWEEN 1 AND 5),
    comment     text,
    result      jsonb NOT NULL,
    received_at timestamptz NOT NULL
);
CREATE INDEX responses_by_customer ON responses (shop_id, customer_id, received_at);

-- Recovery cases: one open case per incident (shop + customer + repair order).
CREATE TABLE cases (
    id                   uuid PRIMARY KEY,
    shop_id              uuid NOT NULL,
    customer_id          text NOT NULL,
    repair_order_id      text,
    incident_key         text NOT NULL,
    severity             text NOT NULL CHECK (severity IN ('critical', 'high', 'normal')),
    status               text NOT NULL DEFAULT 'open'
                         CHECK (status IN ('open', 'acknowledged', 'resolved')),
    assignee             text NOT NULL,
    escalation_level     text NOT NULL
                         CHECK (escalation_level IN ('advisor', 'service_manager', 'owner')),
    opened_at            timestamptz NOT NULL,
    -- the current window of each SLA clock (a breach escalates and starts a new one)
    ack_window_start     timestamptz NOT NULL,
    ack_at_risk_at       timestamptz NOT NULL,
    ack_due_at           timestamptz NOT NULL,
    resolve_window_start timestamptz NOT NULL,
    resolve_at_risk_at   timestamptz NOT NULL,
    resolve_due_at       timestamptz NOT NULL,
    acknowledged_at      timestamptz,
    acknowledged_by      text,
    resolved_at          timestamptz,
    resolved_by          text,
    outcome              text,
    updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX cases_one_open_per_incident ON cases (shop_id, incident_key)
    WHERE status <> 'resolved';
CREATE INDEX cases_by_status ON cases (shop_id, status, opened_at);
CREATE INDEX cases_by_customer ON cases (shop_id, customer_id, opened_at);

-- Everything that happened to a case, in order: what the API shows as its history.
CREATE TABLE case_history (
    id      bigserial PRIMARY KEY,
    case_id uuid NOT NULL REFERENCES cases (id),
    at      timestamptz NOT NULL,
    kind    text NOT NULL,
    by      text,
    text    text,
    data    jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX case_history_by_case ON case_history (case_id, id);

-- Every negative signal: a customer's second incident within 90 days is critical.
CREATE TABLE negatives (
    id           uuid PRIMARY KEY,
    shop_id      uuid NOT NULL,
    customer_id  text NOT NULL,
    incident_key text NOT NULL,
    case_id      uuid NOT NULL,
    at           timestamptz NOT NULL
);
CREATE INDEX negatives_by_customer ON negatives (shop_id, customer_id, at);

-- Review and referral asks: one of each per visit (or survey), ever.
CREATE TABLE asks (
    shop_id     uuid NOT NULL,
    customer_id text NOT NULL,
    subject     text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('review', 'referral')),
    survey_id   uuid,
    asked_at    timestamptz NOT NULL,
    PRIMARY KEY (shop_id, customer_id, subject, kind)
);
