-- Who changed the shop's settings at the console (a staff id); NULL for the shop's system
-- (its API key) and for the version a shop opens with.
ALTER TABLE policies ADD COLUMN changed_by text;
