-- Rate limits every replica of the service shares (regulars_runtime.limit_store): one row
-- per limited thing, holding when its bucket would be full again (GCRA's "theoretical
-- arrival time", in seconds since the epoch by the database's clock). A row whose time
-- has passed means the same as no row, so old rows are deleted at any time.
CREATE TABLE rate_limits (
    scope text NOT NULL,
    key   text NOT NULL,
    tat   double precision NOT NULL,
    PRIMARY KEY (scope, key)
);
