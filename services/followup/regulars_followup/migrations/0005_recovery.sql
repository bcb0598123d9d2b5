-- A follow-up task is a visit's call, or the check-in after a recovery case.
ALTER TABLE follow_up_tasks ADD COLUMN kind text NOT NULL DEFAULT 'visit';
ALTER TABLE follow_up_tasks DROP CONSTRAINT follow_up_tasks_shop_id_repair_order_id_key;
CREATE UNIQUE INDEX follow_up_tasks_one_per_visit_and_kind
    ON follow_up_tasks (shop_id, repair_order_id, kind);
-- Staff notifications go to a staff member, not to the customer the message is about.
ALTER TABLE messages ADD COLUMN to_staff text;
