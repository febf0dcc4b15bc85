-- Webhooks (taskapi/webhooks.py), and their deliveries in the outbox (taskapi/delivery.py), which
-- now carries every kind of delivery, not mail alone.

CREATE TABLE IF NOT EXISTS webhooks (
    id         BIGINT NOT NULL GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    url        TEXT NOT NULL,
    -- The events it is sent, as a JSON list of names.
    events     TEXT NOT NULL,
    -- The key its deliveries are signed with (HMAC-SHA256): kept as it is, as signing needs it.
    secret     TEXT NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE INDEX IF NOT EXISTS webhooks_user_id_idx ON webhooks (user_id);

-- A delivery to a webhook goes with it: deleting the webhook (or its user) drops what is pending.
ALTER TABLE outbox ADD COLUMN webhook_id BIGINT REFERENCES webhooks (id) ON DELETE CASCADE;

CREATE INDEX IF NOT EXISTS outbox_webhook_id_idx ON outbox (webhook_id);
