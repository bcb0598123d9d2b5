-- What the shop sees of its keys (never the secret): what each is for, and when it was
-- last used, to the hour, so a forgotten key can be found and revoked.
ALTER TABLE api_keys ADD COLUMN label text;
ALTER TABLE api_keys ADD COLUMN last_used_at timestamptz;
CREATE INDEX api_keys_shop_issued ON api_keys (shop_id, issued_at, key_id);
