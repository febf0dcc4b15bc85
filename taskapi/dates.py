"""When a task is due, whichever kind of due it has.

A task is due at an instant (`due_at`) or on a day (`due_date`), which counts as due at the end
of that day in its user's time zone: the first moment of the next day there. `due_key` holds
that instant either way, so that due_before, due_after, overdue and sort=due_at treat both
kinds alike; a user's new time zone moves the keys of their all-day tasks."""

from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo, available_timezones

from peewee import Case

from .models import Task


@cache
def get_time_zones():
    return frozenset(available_timezones())


def is_time_zone(name):
    return name in get_time_zones()


def end_of_day(day, time_zone):
    """The instant a day ends in a time zone: the next day's first moment there (at a
    daylight-saving change that skips midnight, the first moment that exists). The last day
    there is (9999-12-31) ends at the last moment there is."""
    if day == date.max:
        return datetime.max.replace(tzinfo=UTC)
    next_day = datetime.combine(day + timedelta(days=1), time(), tzinfo=ZoneInfo(time_zone))
    return next_day.astimezone(UTC)


def due_values(fields, time_zone):
    """What a write of `fields` also sets: due_key, and the other kind of due cleared when one
    is set. Either set to null leaves a due of the other kind (and its key) as it is."""
    if fields.get("due_at") is not None:
        return {"due_date": None, "due_key": fields["due_at"]}
    if fields.get("due_date") is not None:
        return {"due_at": None, "due_key": end_of_day(fields["due_date"], time_zone)}
    if "due_at" in fields and "due_date" in fields:
        return {"due_key": None}
    if "due_at" in fields:
        return {"due_key": Case(None, [(Task.due_date.is_null(), None)], Task.due_key)}
    if "due_date" in fields:
        return {"due_key": Case(None, [(Task.due_at.is_null(), None)], Task.due_key)}
    return {}


def move_all_day_tasks(user_id, time_zone):
    """A user's new time zone: each all-day task is now due at the end of its day there. One
    statement a distinct day; nothing a client sees changes, so updated_at stays."""
    mine = [Task.user == user_id, Task.due_date.is_null(False)]
    days = [task.due_date for task in Task.select(Task.due_date).distinct().where(*mine)]
    for day in days:
        key = end_of_day(day, time_zone)
        Task.update(due_key=key).where(*mine, Task.due_date == day).execute()
