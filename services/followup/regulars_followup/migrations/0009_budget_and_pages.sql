-- The order messages were decided in: a message held for its moment yields to those
-- decided before it, never to later ones (the budget counts what is already decided).
-- Rows of earlier versions get theirs in no particular order, which none of them needs.
ALTER TABLE messages ADD COLUMN seq bigint GENERATED ALWAYS AS IDENTITY;

-- A customer's visits, for the monthly check's pages and each budget decision (their
-- latest visit): without it both read the whole shop's visits.
CREATE INDEX visits_by_customer ON visits (shop_id, customer_id, completed_at);
