"""Task events for webhooks (task.created, task.updated, task.completed, task.deleted): what a
write did to each task, queued in the write's own transaction, so that they stand or fall
with it. A user without webhooks (a counter read with their row) costs no query more."""

from contextlib import nullcontext

from flask import g

from . import webhooks
from .db import database
from .schemas import TaskSchema

TASK = TaskSchema()


def is_wanted():
    return g.user.webhook_count > 0


def transaction():
    """A transaction for a write that is told to webhooks (for one statement, none)."""
    return database.atomic() if is_wanted() else nullcontext()


def created(task):
    if is_wanted():
        webhooks.emit(g.user.id, "task.created", TASK.dump(task))


def written(tasks, moved_on=()):
    """Tasks a write changed: task.completed for those it completed (then, and only then,
    completed_at is its updated_at) or moved on to their next occurrence (`moved_on`, ids),
    task.updated for the others."""
    if not is_wanted():
        return
    for task in tasks:
        completed = task.completed and task.completed_at == task.updated_at or task.id in moved_on
        webhooks.emit(g.user.id, "task.completed" if completed else "task.updated", TASK.dump(task))


def deleted(ids):
    if is_wanted():
        for task_id in ids:
            webhooks.emit(g.user.id, "task.deleted", {"id": task_id})
