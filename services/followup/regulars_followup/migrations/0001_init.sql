-- followup's copy of the customers it contacts (from regulars.customer).
CREATE TABLE customers (
    shop_id     uuid NOT NULL,
    customer_id text NOT NULL,
    name        text NOT NULL,
    phone       text,
    email       text,
    state       text,
    timezone    text,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (shop_id, customer_id)
);

-- One row per repair order: one truth per visit, however often "completed" arrives.
CREATE TABLE visits (
    shop_id         uuid NOT NULL,
    repair_order_id text NOT NULL,
    customer_id     text NOT NULL,
    completed_at    timestamptz NOT NULL,
    status          text NOT NULL,           -- completed | voided | reopened
    data            jsonb NOT NULL,
    first_event_id  uuid NOT NULL,
    PRIMARY KEY (shop_id, repair_order_id)
);

CREATE TABLE follow_up_tasks (
    id               uuid PRIMARY KEY,
    shop_id          uuid NOT NULL,
    customer_id      text NOT NULL,
    repair_order_id  text NOT NULL,
    assignee         text,
    status           text NOT NULL,          -- scheduled | completed | missed | cancelled
    due_at           timestamptz NOT NULL,
    attempts         integer NOT NULL DEFAULT 0,
    script           jsonb NOT NULL,
    policy_version   integer NOT NULL,
    status_reason    text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (shop_id, repair_order_id)
);
CREATE INDEX follow_up_tasks_by_due ON follow_up_tasks (shop_id, due_at, id);
CREATE INDEX follow_up_tasks_by_customer ON follow_up_tasks (shop_id, customer_id);
