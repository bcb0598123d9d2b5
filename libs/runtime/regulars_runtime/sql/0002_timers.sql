-- Durable timers: every "due", "missed", "escalate" moment is a row, fired by
-- regulars_runtime.timers.TimerScheduler on whichever replica claims it first.
CREATE TABLE timers (
    id           bigserial PRIMARY KEY,
    -- The idempotency key ("followup.missed:<task id>:..."): scheduling the same moment
    -- twice (an event redelivered, a command retried) leaves one timer.
    key          text NOT NULL UNIQUE,
    kind         text NOT NULL,
    -- NULL for timers that belong to no one shop (a monthly sweep of every shop).
    shop_id      uuid,
    fire_at      timestamptz NOT NULL,
    payload      jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    fired_at     timestamptz,
    cancelled_at timestamptz,
    -- Failed firings so far; fire_at is pushed back by the scheduler's backoff after each.
    attempts     integer NOT NULL DEFAULT 0,
    last_error   text
);

-- Only pending timers are ever searched by time; fired and cancelled ones stay out of
-- the index, so it stays as small as the backlog however long the history grows.
CREATE INDEX timers_pending ON timers (fire_at)
    WHERE fired_at IS NULL AND cancelled_at IS NULL;
