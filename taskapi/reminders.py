"""Reminders: up to five a task, each at an instant (`at`) or some seconds before its due
(`before`), and the firings they make.

A task's reminders live in its row, as JSON, each with its id and the instant it fires
(`fires_at`), times as ISO text: the tasks a client reads cost no query more. reminder_firings
holds the firings still to come, indexed by that instant, for the delivery worker: each round,
fire_due takes those that are due (a DELETE ... RETURNING, so no two processes take the same
one) and, in the same transaction, queues what they deliver: a mail to the user, if their
address is verified, and a `reminder.fired` call to each of their webhooks that takes it. A
firing is queued exactly once; the outbox then delivers it at least once (see delivery.py).

When the due moves, `before` reminders follow it; when a recurring task moves on to its next
occurrence, its `at` reminders move as far as its due did.
"""

import secrets
import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from flask import g
from flask.views import MethodView

from . import delivery, mail, webhooks
from .api import Blueprint, abort
from .dates import get_key
from .db import database
from .models import ReminderFiring, Task, User, utcnow
from .recurrence import get_due
from .schemas import FiringSchema, WindowArgsSchema

MOST_AT_ONCE = 100  # firings one round takes in one transaction
LARGEST_ID = 2**53 - 1  # a JSON number every client reads exactly

blp = Blueprint(
    "reminders",
    __name__,
    url_prefix="/api/users/<user_id>/reminders",
    description="When a user's reminders fire, for clients that schedule their own "
    "notifications. The service also delivers them: by mail and to webhooks.",
)


@blp.route("")
class Firings(MethodView):
    @blp.arguments(WindowArgsSchema(), location="query")
    @blp.response(200, FiringSchema(many=True))
    def get(self, args, user_id):
        """The firings of the user's reminders from `from` to `to` (at most 366 days), of open
        tasks, soonest first; a recurring task's for its current occurrence."""
        return in_window(args["start"], args["end"])


class ReminderError(ValueError):
    """Reminders that cannot be set, with the reason a client is told."""


def plan(reminders, due_key, known=(), moved_by=None):
    """The reminders as stored, from what a client sent or what is stored: each with an id
    (its own, if it is one of the task's `known` ids, once; else a new one) and when it fires
    for this due. A recurring task that moved on moves its `at` reminders `moved_by` too
    (unless that is past the last day there is)."""
    planned, kept = [], set()
    for reminder in reminders:
        reminder = dict(reminder)
        if reminder.get("id") not in known or reminder["id"] in kept:
            reminder["id"] = new_id()
        kept.add(reminder["id"])
        if "at" in reminder:
            at = as_time(reminder["at"])
            reminder["at"] = (move(at, moved_by) if moved_by else at).isoformat()
        planned.append(reminder | {"fires_at": get_fires_at(reminder, due_key).isoformat()})
    return planned


def move(time, by):
    try:
        return time + by
    except OverflowError:
        return time


def follow(task, fields, time_zone, moved):
    """`fields` with the task's reminders as the write leaves them, if it sets them or the
    due; `moved`: the write moves a recurring task on to its next occurrence."""
    if "reminders" not in fields and not fields.keys() & {"due_at", "due_date"}:
        return fields
    due_at, due_date = get_due(task, fields)
    key = get_key(due_at, due_date, time_zone)
    moved_by = key - get_key(task.due_at, task.due_date, time_zone) if moved else None
    known = {reminder["id"] for reminder in task.reminders}
    reminders = plan(fields.get("reminders", task.reminders), key, known, moved_by)
    return fields | {"reminders": reminders}


def follow_time_zone(user_id, time_zone):
    """A new time zone moves the dues of all-day tasks, and their reminders with them (those
    it would move before the first day there is stay where they were)."""
    found = [Task.user == user_id, Task.due_date.is_null(False), Task.reminders.is_null(False)]
    for task in list(Task.select().where(*found)):  # read first: SQLite would see them again
        known = {reminder["id"] for reminder in task.reminders}
        try:
            task.reminders = plan(task.reminders, get_key(None, task.due_date, time_zone), known)
        except ReminderError:
            continue
        moved = Task.update(reminders=task.reminders, updated_at=utcnow())
        moved.where(Task.id == task.id).execute()
        schedule(task)


def new_id():
    return secrets.randbelow(LARGEST_ID) + 1


def as_time(value):
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def get_fires_at(reminder, due_key):
    if "at" in reminder:
        return as_time(reminder["at"])
    if due_key is None:
        raise ReminderError("A reminder before the due needs a due_at or a due_date.")
    try:
        return due_key - timedelta(seconds=reminder["before"])
    except OverflowError:  # before the first day there is
        raise ReminderError("A reminder must fire in the years 1 to 9999.") from None


def schedule(task):
    """The task's firings, as its reminders now say: those still to come."""
    ReminderFiring.delete().where(ReminderFiring.task == task.id).execute()
    now = utcnow()
    firings = [
        {"task": task.id, "reminder_id": reminder["id"], "fires_at": fires_at}
        for reminder in task.reminders
        if (fires_at := as_time(reminder["fires_at"])) > now
    ]
    if firings:
        ReminderFiring.insert_many(firings).execute()


@delivery.every_round
def fire_due():
    """Queue the deliveries of every firing that is due; how many there were."""
    fired = 0
    while taken := take_due():
        fired += taken
    return fired


def take_due():
    with database.atomic():
        now = utcnow()
        due = ReminderFiring.select(ReminderFiring.id).where(ReminderFiring.fires_at <= now)
        due = due.order_by(ReminderFiring.fires_at).limit(MOST_AT_ONCE)
        query = ReminderFiring.delete().where(ReminderFiring.id.in_(due))
        firings = list(query.returning(ReminderFiring).execute())
        for firing in firings:
            queue_firing(firing)
    return len(firings)


def queue_firing(firing):
    task = Task.get_or_none(Task.id == firing.task_id)
    if task is None or task.completed or task.deleted_at is not None:
        return  # nothing to remind of any more
    for reminder in task.reminders:  # the reminder as it is now, if it still fires then
        if (reminder["id"], as_time(reminder["fires_at"])) == (firing.reminder_id, firing.fires_at):
            data = describe(task, reminder)
            webhooks.emit(task.user_id, "reminder.fired", data)
            mail_id = uuid.uuid4().hex
            delivery.queue("mail:reminder", user_id=task.user_id, message_id=mail_id, **data)


def describe(task, reminder):
    """A firing as clients see it (GET .../reminders, the reminder.fired event)."""
    return {
        "task_id": task.id,
        "reminder_id": reminder["id"],
        "fires_at": reminder["fires_at"],
        "title": task.title,
        "due_at": task.due_at and task.due_at.isoformat(),
        "due_date": task.due_date and task.due_date.isoformat(),
    }


@mail.composer("mail:reminder")
def compose(payload):
    user = User.get_or_none(User.id == payload["user_id"])
    if user is None or not user.email_verified:
        return None
    title, due = " ".join(payload["title"].split()), show_due(payload, user.time_zone)
    return user.email, f"Reminder: {title}", f"{title}\n" + (f"\nDue: {due}\n" if due else "")


def show_due(firing, time_zone):
    """The due as the user reads it: on their clock, to the minute."""
    if firing["due_at"] is None:
        return firing["due_date"]
    try:
        local = as_time(firing["due_at"]).astimezone(ZoneInfo(time_zone))
    except OverflowError:
        return firing["due_at"]
    return f"{local:%Y-%m-%d %H:%M} ({time_zone})"


def in_window(start, end):
    if end <= start or end - start > timedelta(days=366):
        abort(422, errors={"query": {"to": ["Must be after from, at most 366 days on."]}})
    tasks = Task.of(g.user.id).where(Task.reminders.is_null(False), ~Task.completed)
    found = [
        describe(task, reminder)
        for task in tasks
        for reminder in task.reminders
        if start <= as_time(reminder["fires_at"]) < end
    ]
    return sorted(found, key=lambda firing: (as_time(firing["fires_at"]), firing["task_id"]))
