-- Sessions that can be ended, refresh tokens, proof of email, and mail sent from an outbox.
-- Accounts that existed before are unverified: a link, or the frontend's verdict, proves them.

ALTER TABLE users ADD COLUMN email_verified BOOLEAN NOT NULL DEFAULT FALSE;

-- Sessions of the accounts that sign in here (taskapi/sessions.py). An access token issued here
-- names its session (`sid`) and is refused once the row is gone: ending a session deletes it.
CREATE TABLE IF NOT EXISTS sessions (
    id           TEXT NOT NULL PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    label        TEXT NOT NULL,
    created_at   TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP,
    last_used_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP,
    -- When its latest refresh token expires; every refresh moves it on.
    expires_at   TIMESTAMP WITH TIME ZONE NOT NULL
);

CREATE INDEX IF NOT EXISTS sessions_user_id_idx ON sessions (user_id);

-- Every refresh token a session was given, by its SHA-256: each works once, and one presented
-- again ends its session, as it may have been stolen (RFC 9700, section 4.14).
CREATE TABLE IF NOT EXISTS refresh_tokens (
    token_hash TEXT NOT NULL PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    used_at    TIMESTAMP WITH TIME ZONE
);

CREATE INDEX IF NOT EXISTS refresh_tokens_session_id_idx ON refresh_tokens (session_id);

-- Single-use tokens sent by email (password reset, email verification), by their SHA-256.
CREATE TABLE IF NOT EXISTS email_tokens (
    token_hash TEXT NOT NULL PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose    TEXT NOT NULL,
    expires_at TIMESTAMP WITH TIME ZONE NOT NULL,
    used_at    TIMESTAMP WITH TIME ZONE
);

CREATE INDEX IF NOT EXISTS email_tokens_user_id_idx ON email_tokens (user_id);

-- Mail to send (taskapi/mail.py), written in the request that causes it and sent after it by a
-- thread of each server process. A process claims a row by moving send_after past its lease,
-- so two never send the same one; a sent row is deleted.
CREATE TABLE IF NOT EXISTS outbox (
    id         BIGINT NOT NULL GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind       TEXT NOT NULL,
    payload    TEXT NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    send_after DOUBLE PRECISION NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE INDEX IF NOT EXISTS outbox_send_after_idx ON outbox (send_after);
