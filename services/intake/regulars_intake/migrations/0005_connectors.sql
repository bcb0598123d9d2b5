-- A shop's connector to its management system: the system posts its own webhooks to
-- /hooks/{system}/{id}. The secret (and Jobber's access token) are encrypted by intake
-- before they get here; the choices are what the shop set (statuses, money, timezone).
CREATE TABLE connectors (
    id               uuid PRIMARY KEY,
    shop_id          uuid NOT NULL REFERENCES shops (id),
    system           text NOT NULL,
    sealed_secret    bytea NOT NULL,
    sealed_token     bytea,
    choices          jsonb NOT NULL DEFAULT '{}',
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    last_delivery_at timestamptz,
    accepted         bigint NOT NULL DEFAULT 0,
    rejected         bigint NOT NULL DEFAULT 0,
    errors           bigint NOT NULL DEFAULT 0,
    UNIQUE (shop_id, system)
);
