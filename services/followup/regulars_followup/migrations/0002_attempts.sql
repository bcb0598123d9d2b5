-- Every call attempt, as staff recorded it.
CREATE TABLE follow_up_attempts (
    task_id    uuid NOT NULL REFERENCES follow_up_tasks (id),
    number     integer NOT NULL,
    shop_id    uuid NOT NULL,
    outcome    text NOT NULL,
    satisfied  boolean,
    score      integer,
    notes      text,
    by_staff   text,
    at         timestamptz NOT NULL,
    PRIMARY KEY (task_id, number)
);
