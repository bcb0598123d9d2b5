-- The console's list of cases by the next deadline (GET /v1/cases?order=sla): the same
-- expression as the query's ORDER BY, so a page is an index range, not a sort of the shop.
CREATE INDEX cases_by_deadline ON cases (
    shop_id, (CASE WHEN status = 'open' THEN ack_due_at ELSE resolve_due_at END), id
);
