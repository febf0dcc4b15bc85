-- How many webhooks each user has, read with the user's row on every request: a task write
-- of a user without any looks for none (taskapi/events.py).

ALTER TABLE users ADD COLUMN webhook_count INTEGER NOT NULL DEFAULT 0;
UPDATE users SET webhook_count = (SELECT COUNT(*) FROM webhooks WHERE webhooks.user_id = users.id);
