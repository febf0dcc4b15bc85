-- Time zones and all-day dates (taskapi/dates.py). A task is due at an instant (due_at) or on a
-- day (due_date: due at the end of that day in its user's time zone). due_key is that instant
-- either way, kept by the app, so that due_before, due_after and sort=due_at treat both alike.

ALTER TABLE users ADD COLUMN time_zone TEXT NOT NULL DEFAULT 'UTC';

ALTER TABLE tasks ADD COLUMN due_date DATE;
ALTER TABLE tasks ADD COLUMN due_key TIMESTAMP WITH TIME ZONE;
UPDATE tasks SET due_key = due_at WHERE due_at IS NOT NULL;

DROP INDEX IF EXISTS tasks_user_id_due_at_idx;
CREATE INDEX IF NOT EXISTS tasks_user_id_due_key_idx ON tasks (user_id, due_key, id);
