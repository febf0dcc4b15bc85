-- Reminders (taskapi/reminders.py). A task's reminders are in its row, as JSON, each with its
-- id and the instant it fires; reminder_firings holds those still to come, indexed by that
-- instant, for the delivery worker, which takes each one once.

ALTER TABLE tasks ADD COLUMN reminders TEXT;

CREATE TABLE IF NOT EXISTS reminder_firings (
    id          BIGINT NOT NULL GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id     BIGINT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    reminder_id BIGINT NOT NULL,
    fires_at    TIMESTAMP WITH TIME ZONE NOT NULL
);

CREATE INDEX IF NOT EXISTS reminder_firings_fires_at_idx ON reminder_firings (fires_at);
CREATE INDEX IF NOT EXISTS reminder_firings_task_id_idx ON reminder_firings (task_id);
