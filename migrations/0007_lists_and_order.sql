-- Lists, subtasks and an order the user sets (taskapi/lists.py, taskapi/ordering.py). Every
-- user gets an inbox, and their tasks go into it as top-level tasks, in the order they were
-- made: positions h00000000, h00000001, ... (valid positions, see taskapi/positions.py).

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

INSERT INTO lists (user_id, name, is_inbox, position, task_count)
SELECT id, 'Inbox', TRUE, 'a0',
       (SELECT count(*) FROM tasks WHERE tasks.user_id = users.id AND tasks.deleted_at IS NULL)
FROM users;

-- SQLite only: it cannot add a NOT NULL column that references another table, so tasks is
-- built again with the new columns. Dropping the old table empties task_tags (its rows
-- cascade) and its triggers and indexes: all of them are made again below.
CREATE TABLE tasks_new (
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
    path         TEXT COLLATE "C" NOT NULL
);

INSERT INTO tasks_new (id, user_id, title, description, completed, created_at, updated_at,
                       priority, due_at, tags, completed_at, deleted_at, list_id, position, path)
SELECT t.id, t.user_id, t.title, t.description, t.completed, t.created_at, t.updated_at,
       t.priority, t.due_at, t.tags, t.completed_at, t.deleted_at,
       lists.id, ranked.position, ranked.position || '.'
FROM tasks AS t
JOIN lists ON lists.user_id = t.user_id AND lists.is_inbox
JOIN (SELECT id, 'h' || substr('0000000' || (row_number() OVER (PARTITION BY user_id
                                             ORDER BY created_at, id) - 1), -8) AS position
      FROM tasks) AS ranked ON ranked.id = t.id;
DROP TABLE tasks;
ALTER TABLE tasks_new RENAME TO tasks;

-- Serves the list query: one user's tasks, newest first (id breaks ties for stable pages).
CREATE INDEX IF NOT EXISTS tasks_user_id_created_at_idx ON tasks (user_id, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS tasks_user_id_completed_idx ON tasks (user_id, completed, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS tasks_user_id_priority_idx ON tasks (user_id, priority, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS tasks_user_id_due_at_idx ON tasks (user_id, due_at, id);
-- Incremental sync (updated_since) and sort=updated_at.
CREATE INDEX IF NOT EXISTS tasks_user_id_updated_at_idx ON tasks (user_id, updated_at, id);
-- A list in display order (sort=position), a subtree (a range of paths), and the list's tasks.
CREATE INDEX IF NOT EXISTS tasks_list_id_path_idx ON tasks (list_id, path, id);
CREATE INDEX IF NOT EXISTS tasks_parent_id_idx ON tasks (parent_id) WHERE parent_id IS NOT NULL;
-- Finds tombstones past their retention.
CREATE INDEX IF NOT EXISTS tasks_deleted_at_idx ON tasks (deleted_at) WHERE deleted_at IS NOT NULL;

INSERT OR IGNORE INTO task_tags (task_id, user_id, tag)
SELECT tasks.id, tasks.user_id, value FROM tasks, json_each(tasks.tags) WHERE tasks.tags <> '[]';

-- The triggers on tasks, as schema.sql has them.
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

-- PostgreSQL only: the new columns, filled, then required.
ALTER TABLE tasks
    ADD COLUMN list_id   BIGINT REFERENCES lists (id) ON DELETE CASCADE,
    ADD COLUMN parent_id BIGINT REFERENCES tasks (id) ON DELETE CASCADE,
    ADD COLUMN position  TEXT COLLATE "C",
    ADD COLUMN path      TEXT COLLATE "C";

UPDATE tasks SET list_id = lists.id, position = ranked.position, path = ranked.position || '.'
FROM lists, (SELECT id, 'h' || lpad((row_number() OVER (PARTITION BY user_id
                                     ORDER BY created_at, id) - 1)::text, 8, '0') AS position
             FROM tasks) AS ranked
WHERE ranked.id = tasks.id AND lists.user_id = tasks.user_id AND lists.is_inbox;

ALTER TABLE tasks
    ALTER COLUMN list_id SET NOT NULL,
    ALTER COLUMN position SET NOT NULL,
    ALTER COLUMN path SET NOT NULL;

-- A list in display order (sort=position), a subtree (a range of paths), and the list's tasks.
CREATE INDEX IF NOT EXISTS tasks_list_id_path_idx ON tasks (list_id, path, id);
CREATE INDEX IF NOT EXISTS tasks_parent_id_idx ON tasks (parent_id) WHERE parent_id IS NOT NULL;

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
