-- Calendar feeds (taskapi/calendars.py): a user's secret feed URL, by its token's SHA-256.

CREATE TABLE IF NOT EXISTS calendar_feeds (
    token_hash TEXT NOT NULL PRIMARY KEY,
    user_id    TEXT NOT NULL UNIQUE REFERENCES users (id) ON DELETE CASCADE,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP
);
