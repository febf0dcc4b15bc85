-- A per-user count of live tasks, kept by triggers, so the task list's total costs nothing
-- however many tasks a user has.

ALTER TABLE users ADD COLUMN task_count INTEGER NOT NULL DEFAULT 0;

UPDATE users SET task_count = (
    SELECT count(*) FROM tasks WHERE tasks.user_id = users.id AND tasks.deleted_at IS NULL
);

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

-- PostgreSQL only: the same with a trigger function.
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
