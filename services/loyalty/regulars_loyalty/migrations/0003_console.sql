-- The staff console: one-time sign-in links, signed-in sessions, and the sign-in requests
-- counted for the rate limit. Only hashes of links and session tokens are kept: whoever
-- reads this table cannot sign in as anyone.
CREATE TABLE sign_in_links (
    token_sha256 bytea PRIMARY KEY,
    shop_id      uuid NOT NULL,
    staff_id     text NOT NULL,
    issued_at    timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    used_at      timestamptz
);
CREATE INDEX sign_in_links_by_expiry ON sign_in_links (expires_at);

CREATE TABLE staff_sessions (
    token_sha256  bytea PRIMARY KEY,
    shop_id       uuid NOT NULL,
    staff_id      text NOT NULL,
    csrf          text NOT NULL,
    started_at    timestamptz NOT NULL,
    last_seen_at  timestamptz NOT NULL,
    ended_at      timestamptz
);
CREATE INDEX staff_sessions_by_staff ON staff_sessions (shop_id, staff_id);

-- what the rate limit counts: every request, known address or not (the answer is the same)
CREATE TABLE sign_in_requests (
    at           timestamptz NOT NULL,
    email_sha256 bytea NOT NULL,
    client       text NOT NULL
);
CREATE INDEX sign_in_requests_by_email ON sign_in_requests (email_sha256, at);
CREATE INDEX sign_in_requests_by_client ON sign_in_requests (client, at);
