-- Recurring tasks (taskapi/recurrence.py). A recurring task stays one row: completing it moves
-- its due to the next occurrence. task_completions keeps each completion of every task.

-- null, or {"rule": "<RFC 5545 RRULE>", "from": "due" | "completion"} as JSON.
ALTER TABLE tasks ADD COLUMN recurrence TEXT;

CREATE TABLE IF NOT EXISTS task_completions (
    id           BIGINT NOT NULL GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id      BIGINT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    completed_at TIMESTAMP WITH TIME ZONE NOT NULL,
    -- The due it was completed for: one of the two, as the task had it then.
    due_at       TIMESTAMP WITH TIME ZONE,
    due_date     DATE
);

CREATE INDEX IF NOT EXISTS task_completions_task_id_idx ON task_completions (task_id, completed_at DESC, id DESC);
