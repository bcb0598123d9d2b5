-- Each customer's lifecycle stage as loyalty last gave it (LifecycleStageChanged), and
-- that event's time, so that an older change arriving later never moves it back.
ALTER TABLE customers
    ADD COLUMN stage text,
    ADD COLUMN stage_at timestamptz;
