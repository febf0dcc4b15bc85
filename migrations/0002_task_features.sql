-- Priority, due dates, tags, completion times, tombstones for sync, idempotent creates,
-- and the indexes behind the list filters.

ALTER TABLE tasks ADD COLUMN priority SMALLINT NOT NULL DEFAULT 0 CHECK (priority BETWEEN 0 AND 3);
ALTER TABLE tasks ADD COLUMN due_at TIMESTAMP WITH TIME ZONE;
ALTER TABLE tasks ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';
ALTER TABLE tasks ADD COLUMN completed_at TIMESTAMP WITH TIME ZONE;
ALTER TABLE tasks ADD COLUMN deleted_at TIMESTAMP WITH TIME ZONE;

-- Tasks completed before this migration get their last change as completion time.
UPDATE tasks SET completed_at = updated_at WHERE completed;

CREATE INDEX tasks_user_id_completed_idx ON tasks (user_id, completed, created_at DESC, id DESC);
CREATE INDEX tasks_user_id_priority_idx ON tasks (user_id, priority, created_at DESC, id DESC);
CREATE INDEX tasks_user_id_due_at_idx ON tasks (user_id, due_at, id);
CREATE INDEX tasks_user_id_updated_at_idx ON tasks (user_id, updated_at, id);
CREATE INDEX tasks_deleted_at_idx ON tasks (deleted_at) WHERE deleted_at IS NOT NULL;

CREATE TABLE task_tags (
    task_id BIGINT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    tag     TEXT NOT NULL,
    PRIMARY KEY (task_id, tag)
);

CREATE INDEX task_tags_user_id_tag_idx ON task_tags (user_id, tag, task_id);

CREATE TABLE idempotency_keys (
    user_id         TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    idempotency_key TEXT NOT NULL,
    request_hash    TEXT NOT NULL,
    response        TEXT,
    created_at      TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (user_id, idempotency_key)
);

-- PostgreSQL only: trigram indexes for q= (SQLite scans the user's own tasks instead).
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX tasks_title_trgm_idx ON tasks USING gin (title gin_trgm_ops);
CREATE INDEX tasks_description_trgm_idx ON tasks USING gin (description gin_trgm_ops);
