-- taskapi schema (PostgreSQL): the full current schema, safe to apply twice.
-- `flask --app taskapi init-db` applies it to a new database; migrations/ brings older ones here.
-- SQLite gets the same tables from this file: taskapi/db.py rewrites the identity column, and
-- each database skips the other's "only" section. No percent signs: the driver would read them.

CREATE TABLE IF NOT EXISTS schema_migrations (
    version    TEXT NOT NULL PRIMARY KEY,
    applied_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS users (
    id            TEXT NOT NULL PRIMARY KEY,
    email         TEXT NOT NULL,
    name          TEXT,
    -- NULL for users provisioned from a frontend token: they cannot sign in here.
    password_hash TEXT,
    created_at    TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP,
    -- The user's live tasks, kept by the triggers below: the list's total without counting.
    task_count    INTEGER NOT NULL DEFAULT 0,
    -- Proven by a link sent to it, or by the frontend's own verdict (taskapi/verification.py).
    email_verified BOOLEAN NOT NULL DEFAULT FALSE,
    -- An IANA name: all-day tasks are due at the end of their day there (taskapi/dates.py).
    time_zone     TEXT NOT NULL DEFAULT 'UTC',
    -- Kept by taskapi/webhooks.py: a task write of a user without any looks for none.
    webhook_count INTEGER NOT NULL DEFAULT 0
);

-- Emails are stored lowercase; the index makes uniqueness case-insensitive even if one is not.
CREATE UNIQUE INDEX IF NOT EXISTS users_email_key ON users (lower(email));

-- A user's lists (projects). Every user has one inbox, made with the account by the trigger
-- users_inbox below and never deleted: a task goes there unless put elsewhere (taskapi/lists.py).
CREATE TABLE IF NOT EXISTS lists (
    id         BIGINT NOT NULL GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name       TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    color      TEXT CHECK (length(color) = 7),
    is_inbox   BOOLEAN NOT NULL DEFAULT FALSE,
    -- Orders the user's lists as plain strings, byte by byte (taskapi/positions.py).
    position   TEXT COLLATE "C" NOT NULL,
    -- The list's live tasks, kept by triggers as users.task_count is.
    task_count INTEGER NOT NULL DEFAULT 0,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP,
    deleted_at TIMESTAMP WITH TIME ZONE
);

CREATE UNIQUE INDEX IF NOT EXISTS lists_user_id_inbox_key ON lists (user_id) WHERE is_inbox;
CREATE INDEX IF NOT EXISTS lists_user_id_position_idx ON lists (user_id, position, id);

CREATE TABLE IF NOT EXISTS tasks (
    id           BIGINT NOT NULL GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title        TEXT NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    description  TEXT CHECK (length(description) <= 10000),
    completed    BOOLEAN NOT NULL DEFAULT FALSE,
    created_at   TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at   TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP,
    -- 0 none, 1 low, 2 medium, 3 high: sorts in the order people mean.
    priority     SMALLINT NOT NULL DEFAULT 0 CHECK (priority BETWEEN 0 AND 3),
    due_at       TIMESTAMP WITH TIME ZONE,
    -- The tags as served (a JSON array); task_tags holds the same tags for filtering.
    tags         TEXT NOT NULL DEFAULT '[]',
    completed_at TIMESTAMP WITH TIME ZONE,
    -- Set by DELETE: the row stays as a tombstone for syncing clients until purged.
    deleted_at   TIMESTAMP WITH TIME ZONE,
    list_id      BIGINT NOT NULL REFERENCES lists (id) ON DELETE CASCADE,
    parent_id    BIGINT REFERENCES tasks (id) ON DELETE CASCADE,
    -- Orders the task among its siblings (same list, same parent), byte by byte.
    position     TEXT COLLATE "C" NOT NULL,
    -- Its ancestors' positions and its own, each followed by '.': the list's display order,
    -- each task followed by its subtasks (taskapi/positions.py).
    path         TEXT COLLATE "C" NOT NULL,
    -- An all-day task's day (due_at is then null; at most one of the two is set).
    due_date     DATE,
    -- When the task is due: due_at, or the end of due_date in the user's time zone. Kept by
    -- the app (taskapi/dates.py), so that filters and sort=due_at treat both kinds alike.
    due_key      TIMESTAMP WITH TIME ZONE,
    -- null, or {"rule": "<RFC 5545 RRULE>", "from": "due" | "completion"} as JSON: completing
    -- the task moves its due to the next occurrence (taskapi/recurrence.py).
    recurrence   TEXT,
    -- null, or up to five reminders as JSON: [{"id", "at" or "before", "fires_at"}]
    -- (taskapi/reminders.py).
    reminders    TEXT
);

-- Serves the list query: one user's tasks, newest first (id breaks ties for stable pages).
CREATE INDEX IF NOT EXISTS tasks_user_id_created_at_idx ON tasks (user_id, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS tasks_user_id_completed_idx ON tasks (user_id, completed, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS tasks_user_id_priority_idx ON tasks (user_id, priority, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS tasks_user_id_due_key_idx ON tasks (user_id, due_key, id);
-- Incremental sync (updated_since) and sort=updated_at.
CREATE INDEX IF NOT EXISTS tasks_user_id_updated_at_idx ON tasks (user_id, updated_at, id);
-- A list in display order (sort=position), a subtree (a range of paths), and the list's tasks.
CREATE INDEX IF NOT EXISTS tasks_list_id_path_idx ON tasks (list_id, path, id);
CREATE INDEX IF NOT EXISTS tasks_parent_id_idx ON tasks (parent_id) WHERE parent_id IS NOT NULL;
-- Finds tombstones past their retention.
CREATE INDEX IF NOT EXISTS tasks_deleted_at_idx ON tasks (deleted_at) WHERE deleted_at IS NOT NULL;

-- Each completion of a task, with the due it had then (a recurring task moves on after it).
CREATE TABLE IF NOT EXISTS task_completions (
    id           BIGINT NOT NULL GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id      BIGINT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    completed_at TIMESTAMP WITH TIME ZONE NOT NULL,
    -- The due it was completed for: one of the two, as the task had it then.
    due_at       TIMESTAMP WITH TIME ZONE,
    due_date     DATE
);

CREATE INDEX IF NOT EXISTS task_completions_task_id_idx ON task_completions (task_id, completed_at DESC, id DESC);

-- The firings of reminders still to come, for the delivery worker (taskapi/reminders.py).
CREATE TABLE IF NOT EXISTS reminder_firings (
    id          BIGINT NOT NULL GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id     BIGINT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    reminder_id BIGINT NOT NULL,
    fires_at    TIMESTAMP WITH TIME ZONE NOT NULL
);

CREATE INDEX IF NOT EXISTS reminder_firings_fires_at_idx ON reminder_firings (fires_at);
CREATE INDEX IF NOT EXISTS reminder_firings_task_id_idx ON reminder_firings (task_id);

-- A user's calendar feed URL, by its token's SHA-256 (taskapi/calendars.py).
CREATE TABLE IF NOT EXISTS calendar_feeds (
    token_hash TEXT NOT NULL PRIMARY KEY,
    user_id    TEXT NOT NULL UNIQUE REFERENCES users (id) ON DELETE CASCADE,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS task_tags (
    task_id BIGINT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    tag     TEXT NOT NULL,
    PRIMARY KEY (task_id, tag)
);

CREATE INDEX IF NOT EXISTS task_tags_user_id_tag_idx ON task_tags (user_id, tag, task_id);

-- One row per Idempotency-Key a user sent with a create: the first response is replayed.
CREATE TABLE IF NOT EXISTS idempotency_keys (
    user_id         TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    idempotency_key TEXT NOT NULL,
    request_hash    TEXT NOT NULL,
    response        TEXT,
    created_at      TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (user_id, idempotency_key)
);

-- An account deleted here stays deleted: a frontend token naming it is refused rather than
-- bringing it back as a new, empty account (taskapi/auth.py, get_or_provision_user).
CREATE TABLE IF NOT EXISTS deleted_users (
    id         TEXT NOT NULL PRIMARY KEY,
    deleted_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP
);

-- Rate-limit windows, shared by every process of the service (taskapi/ratelimits.py, DatabaseStorage).
CREATE TABLE IF NOT EXISTS rate_limits (
    key        TEXT NOT NULL PRIMARY KEY,
    hits       INTEGER NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL
);

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

-- A user's webhooks (taskapi/webhooks.py): where events are POSTed, signed with the secret.
-- Before the outbox, whose deliveries to a webhook refer to it.
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

-- What to deliver (taskapi/delivery.py: mail, webhook calls), written in the request that
-- causes it and delivered after it by a thread of each server process. A process claims a row
-- by moving send_after past its lease, so two never deliver the same one; a delivered row is
-- deleted. A delivery to a webhook goes with it (webhook_id): deleting the webhook, or its
-- user, drops what is pending.
CREATE TABLE IF NOT EXISTS outbox (
    id         BIGINT NOT NULL GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind       TEXT NOT NULL,
    payload    TEXT NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    send_after DOUBLE PRECISION NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP,
    webhook_id BIGINT REFERENCES webhooks (id) ON DELETE CASCADE
);

CREATE INDEX IF NOT EXISTS outbox_send_after_idx ON outbox (send_after);
CREATE INDEX IF NOT EXISTS outbox_webhook_id_idx ON outbox (webhook_id);

-- SQLite only: the same live-task counter, with SQLite's triggers.
CREATE TRIGGER IF NOT EXISTS tasks_count_insert AFTER INSERT ON tasks WHEN NEW.deleted_at IS NULL
BEGIN
    UPDATE users SET task_count = task_count + 1 WHERE id = NEW.user_id;
END;
CREATE TRIGGER IF NOT EXISTS tasks_count_delete AFTER DELETE ON tasks WHEN OLD.deleted_at IS NULL
BEGIN
    UPDATE users SET task_count = task_count - 1 WHERE id = OLD.user_id;
END;
CREATE TRIGGER IF NOT EXISTS tasks_count_tombstone AFTER UPDATE OF deleted_at ON tasks
WHEN OLD.deleted_at IS NOT NEW.deleted_at
BEGIN
    UPDATE users SET task_count = task_count + (CASE WHEN NEW.deleted_at IS NULL THEN 1 ELSE -1 END)
    WHERE id = NEW.user_id;
END;

-- task_tags follows tasks.tags (the JSON array), whatever statement writes it.
CREATE TRIGGER IF NOT EXISTS tasks_tags_insert AFTER INSERT ON tasks WHEN NEW.tags <> '[]'
BEGIN
    INSERT OR IGNORE INTO task_tags (task_id, user_id, tag)
    SELECT NEW.id, NEW.user_id, value FROM json_each(NEW.tags);
END;
CREATE TRIGGER IF NOT EXISTS tasks_tags_update AFTER UPDATE OF tags ON tasks
WHEN OLD.tags IS NOT NEW.tags
BEGIN
    DELETE FROM task_tags WHERE task_id = NEW.id;
    INSERT OR IGNORE INTO task_tags (task_id, user_id, tag)
    SELECT NEW.id, NEW.user_id, value FROM json_each(NEW.tags);
END;

-- lists.task_count too; a task that changes lists leaves one count for the other.
CREATE TRIGGER IF NOT EXISTS tasks_list_count_insert AFTER INSERT ON tasks
WHEN NEW.deleted_at IS NULL
BEGIN
    UPDATE lists SET task_count = task_count + 1 WHERE id = NEW.list_id;
END;
CREATE TRIGGER IF NOT EXISTS tasks_list_count_delete AFTER DELETE ON tasks
WHEN OLD.deleted_at IS NULL
BEGIN
    UPDATE lists SET task_count = task_count - 1 WHERE id = OLD.list_id;
END;
CREATE TRIGGER IF NOT EXISTS tasks_list_count_update AFTER UPDATE OF deleted_at, list_id ON tasks
WHEN OLD.deleted_at IS NOT NEW.deleted_at OR OLD.list_id IS NOT NEW.list_id
BEGIN
    UPDATE lists SET task_count = task_count - 1 WHERE id = OLD.list_id AND OLD.deleted_at IS NULL;
    UPDATE lists SET task_count = task_count + 1 WHERE id = NEW.list_id AND NEW.deleted_at IS NULL;
END;

-- Every user has an inbox from the moment the account exists, however it was made (and
-- made at that moment: SQLite's CURRENT_TIMESTAMP would drop the fraction of a second).
CREATE TRIGGER IF NOT EXISTS users_inbox AFTER INSERT ON users
BEGIN
    INSERT INTO lists (user_id, name, is_inbox, position, created_at, updated_at)
    VALUES (NEW.id, 'Inbox', TRUE, 'a0', NEW.created_at, NEW.created_at);
END;

-- PostgreSQL only: the case-insensitive search (q=) in titles and descriptions reads only the
-- user's matching tasks: one GIN index holds the user (btree_gin) with the trigrams of both
-- texts (pg_trgm). A query of one or two characters has no trigram: the planner takes the
-- user's index on created_at then, as before. SQLite scans the user's own tasks.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE EXTENSION IF NOT EXISTS btree_gin;
CREATE INDEX IF NOT EXISTS tasks_user_id_search_idx ON tasks
    USING gin (user_id, title gin_trgm_ops, description gin_trgm_ops);

-- Keeps users.task_count equal to the user's live tasks: once per statement, from the rows it
-- changed (transition tables), so a bulk insert or clear adds one UPDATE per user, not per row.
CREATE OR REPLACE FUNCTION count_live_tasks() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE users SET task_count = task_count + changed.n
        FROM (SELECT user_id, count(*) AS n FROM new_rows WHERE deleted_at IS NULL
              GROUP BY user_id) AS changed
        WHERE users.id = changed.user_id;
    ELSIF TG_OP = 'DELETE' THEN
        UPDATE users SET task_count = task_count - changed.n
        FROM (SELECT user_id, count(*) AS n FROM old_rows WHERE deleted_at IS NULL
              GROUP BY user_id) AS changed
        WHERE users.id = changed.user_id;
    ELSE
        UPDATE users SET task_count = task_count + changed.n
        FROM (SELECT new_rows.user_id,
                     sum(CASE WHEN new_rows.deleted_at IS NULL THEN 1 ELSE -1 END) AS n
              FROM new_rows JOIN old_rows ON old_rows.id = new_rows.id
              WHERE (old_rows.deleted_at IS NULL) <> (new_rows.deleted_at IS NULL)
              GROUP BY new_rows.user_id) AS changed
        WHERE users.id = changed.user_id;
    END IF;
    RETURN NULL;
END
$$;
CREATE OR REPLACE TRIGGER tasks_count_insert AFTER INSERT ON tasks
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION count_live_tasks();
CREATE OR REPLACE TRIGGER tasks_count_delete AFTER DELETE ON tasks
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION count_live_tasks();
-- Every UPDATE statement runs it (a column list cannot go with transition tables), but only a
-- change of deleted_at, a task becoming a tombstone or back, writes to users.
CREATE OR REPLACE TRIGGER tasks_count_tombstone AFTER UPDATE ON tasks
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION count_live_tasks();

-- task_tags follows tasks.tags, as in SQLite above.
CREATE OR REPLACE FUNCTION copy_task_tags() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        DELETE FROM task_tags WHERE task_id = NEW.id;
    END IF;
    INSERT INTO task_tags (task_id, user_id, tag)
    SELECT NEW.id, NEW.user_id, tag FROM json_array_elements_text(NEW.tags::json) AS tag
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;
CREATE OR REPLACE TRIGGER tasks_tags_insert AFTER INSERT ON tasks
    FOR EACH ROW WHEN (NEW.tags <> '[]') EXECUTE FUNCTION copy_task_tags();
CREATE OR REPLACE TRIGGER tasks_tags_update AFTER UPDATE OF tags ON tasks
    FOR EACH ROW WHEN (OLD.tags IS DISTINCT FROM NEW.tags) EXECUTE FUNCTION copy_task_tags();

-- lists.task_count, as count_live_tasks keeps users.task_count: the live rows a statement
-- wrote, less the live rows it replaced, per list (a task moved to another list counts as such).
CREATE OR REPLACE FUNCTION count_list_tasks() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE lists SET task_count = task_count + changed.n
        FROM (SELECT list_id, count(*) AS n FROM new_rows WHERE deleted_at IS NULL
              GROUP BY list_id) AS changed
        WHERE lists.id = changed.list_id;
    ELSIF TG_OP = 'DELETE' THEN
        UPDATE lists SET task_count = task_count - changed.n
        FROM (SELECT list_id, count(*) AS n FROM old_rows WHERE deleted_at IS NULL
              GROUP BY list_id) AS changed
        WHERE lists.id = changed.list_id;
    ELSE
        UPDATE lists SET task_count = task_count + changed.n
        FROM (SELECT list_id, sum(n) AS n
              FROM (SELECT list_id, 1 AS n FROM new_rows WHERE deleted_at IS NULL
                    UNION ALL
                    SELECT list_id, -1 AS n FROM old_rows WHERE deleted_at IS NULL) AS live
              GROUP BY list_id HAVING sum(n) <> 0) AS changed
        WHERE lists.id = changed.list_id;
    END IF;
    RETURN NULL;
END
$$;
CREATE OR REPLACE TRIGGER tasks_list_count_insert AFTER INSERT ON tasks
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION count_list_tasks();
CREATE OR REPLACE TRIGGER tasks_list_count_delete AFTER DELETE ON tasks
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION count_list_tasks();
CREATE OR REPLACE TRIGGER tasks_list_count_update AFTER UPDATE ON tasks
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION count_list_tasks();

-- Every user has an inbox from the moment the account exists, however it was made (and
-- made at that moment: SQLite's CURRENT_TIMESTAMP would drop the fraction of a second).
CREATE OR REPLACE FUNCTION create_inbox() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO lists (user_id, name, is_inbox, position, created_at, updated_at)
    VALUES (NEW.id, 'Inbox', TRUE, 'a0', NEW.created_at, NEW.created_at);
    RETURN NULL;
END
$$;
CREATE OR REPLACE TRIGGER users_inbox AFTER INSERT ON users
    FOR EACH ROW EXECUTE FUNCTION create_inbox();
