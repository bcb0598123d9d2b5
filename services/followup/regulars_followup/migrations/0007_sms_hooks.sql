-- Texts customers sent to our number (the SMS provider's inbound webhook), one row per
-- provider message sid: a retried webhook is the same text and is acted on once.
CREATE TABLE inbound_texts (
    message_sid  text PRIMARY KEY,
    account_sid  text NOT NULL,
    from_number  text NOT NULL,
    to_number    text NOT NULL,
    body         text NOT NULL,
    outcome      text,            -- replied: <shop>/<customer>, ... | unmatched
    received_at  timestamptz NOT NULL DEFAULT now()
);

-- Whose number a text came from, across shops (separators dropped, as the adapter does).
CREATE INDEX customers_by_compact_phone
    ON customers ((regexp_replace(phone, '[[:space:]().-]', '', 'g')))
    WHERE phone IS NOT NULL;

-- Status callbacks find their message by the provider's sid.
CREATE INDEX messages_by_provider_id ON messages (provider_id) WHERE provider_id IS NOT NULL;
