-- A message in flight belongs to one dispatcher: its lease names the owner (a replica id)
-- and expires in database time (now()), renewed while the send goes on. Recovery takes
-- only leases expired by the database's clock, never an application's.
ALTER TABLE messages
    ADD COLUMN lease_owner      text,
    ADD COLUMN lease_expires_at timestamptz,
    -- when this attempt was claimed (database time): a text is looked for at the provider
    -- from then on when its sender died
    ADD COLUMN claimed_at       timestamptz,
    -- an email's sender began DATA: from then on the server may have it, and SMTP has no
    -- token to ask; such an email is never sent again automatically
    ADD COLUMN data_started_at  timestamptz;

-- Rows 'sending' from before leases: expired now, as their sender's 30 s window was.
UPDATE messages SET lease_expires_at = updated_at + interval '30 seconds',
    claimed_at = updated_at
    WHERE status = 'sending';

CREATE INDEX messages_in_flight ON messages (lease_expires_at) WHERE status = 'sending';
