-- The database keeps task_tags in step with tasks.tags, so a write of a task's tags is one
-- statement, with no transaction around it, and no writer can leave the two apart.

-- SQLite only: task_tags follows tasks.tags (the JSON array), whatever statement writes it.
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

-- PostgreSQL only: the same with a trigger function.
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
