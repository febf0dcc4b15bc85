"""When a task is due, whichever kind of due it has.

A task is due at an instant (`due_at`) or on a day (`due_date`), which counts as due at the end
of that day in its user's time zone: the first moment of the next day there. `due_key` holds
that instant either way, so that due_before, due_after, overdue and sort=due_at treat both
kinds alike; a user's new time zone moves the keys of their all-day tasks."""

from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo, available_timezones, reset_tzpath

from flask import g
from peewee import Case

from .models import Task, User

# Zones from the tzdata package alone, not the host's files: every host computes the same
# instants, and only IANA's names count ("localtime", the host's own zone, is not one).
reset_tzpath(to=())
MOST_CASES = 500  # days per statement when a new time zone moves them


LAST_START = datetime.max.replace(tzinfo=UTC) - timedelta(days=1)


@cache
def get_time_zones():
    return frozenset(available_timezones())


def is_time_zone(name):
    return name in get_time_zones()


def end_of_day(day, time_zone):
    """The instant a day ends in a time zone: the next day's first moment there (where a
    daylight-saving change skips midnight, 00:00 as zoneinfo reads it: an hour on). The last
    day there is (9999-12-31) ends a day after it starts, or at the last moment there is."""
    zone = ZoneInfo(time_zone)
    if day == date.max:
        start = datetime.combine(day, time(), tzinfo=zone).astimezone(UTC)
        return start + timedelta(days=1) if start < LAST_START else datetime.max.replace(tzinfo=UTC)
    return datetime.combine(day + timedelta(days=1), time(), tzinfo=zone).astimezone(UTC)


def get_key(due_at, due_date, time_zone):
    """When a due of either kind comes (due_key's value)."""
    return end_of_day(due_date, time_zone) if due_date is not None else due_at


def get_time_zone():
    """The user's time zone as it is now. Read it after ordering.lock_user(): a change of
    zone holds the same lock while it moves the keys, so none is computed with the old one."""
    return User.select(User.time_zone).where(User.id == g.user.id).scalar()


def due_values(fields):
    """What a write of `fields` also sets: due_key, and the other kind of due cleared when one
    is set. Either set to null leaves a due of the other kind (and its key) as it is. With a
    due_date, after ordering.lock_user() (see get_time_zone)."""
    if fields.get("due_at") is not None:
        return {"due_date": None, "due_key": fields["due_at"]}
    if fields.get("due_date") is not None:
        return {"due_at": None, "due_key": end_of_day(fields["due_date"], get_time_zone())}
    if "due_at" in fields and "due_date" in fields:
        return {"due_key": None}
    if "due_at" in fields:
        return {"due_key": Case(None, [(Task.due_date.is_null(), None)], Task.due_key)}
    if "due_date" in fields:
        return {"due_key": Case(None, [(Task.due_at.is_null(), None)], Task.due_key)}
    return {}


def move_all_day_tasks(user_id, time_zone):
    """A user's new time zone: each all-day task is now due at the end of its day there, set
    by one statement for up to MOST_CASES days. Nothing a client sees changes, so updated_at
    stays. Call it after the UPDATE of the user's row, whose lock it then holds."""
    mine = [Task.user == user_id, Task.due_date.is_null(False)]
    days = [task.due_date for task in Task.select(Task.due_date).distinct().where(*mine)]
    for start in range(0, len(days), MOST_CASES):
        some = days[start : start + MOST_CASES]
        keys = Case(Task.due_date, [(day, end_of_day(day, time_zone)) for day in some])
        Task.update(due_key=keys).where(*mine, Task.due_date.in_(some)).execute()
