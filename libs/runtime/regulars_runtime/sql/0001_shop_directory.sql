-- Every service keeps its own copy of what it needs to know about shops, fed by the
-- regulars.shop topic: API keys (hashes only) to authenticate staff, and the policy.
CREATE TABLE api_keys (
    key_id        text PRIMARY KEY,
    shop_id       uuid NOT NULL,
    secret_sha256 bytea NOT NULL,
    issued_at     timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz
);
CREATE INDEX api_keys_shop ON api_keys (shop_id);

CREATE TABLE shop_policies (
    shop_id    uuid PRIMARY KEY,
    version    integer NOT NULL,
    policy     jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
