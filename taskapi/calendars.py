"""The calendar feed: a secret URL that serves a user's open tasks with a due as iCalendar
VTODOs (RFC 5545), with their RRULE and VALARMs, for calendar apps, which cannot send a bearer
token. The URL holds a random token; only its SHA-256 is stored, a new one replaces the old,
and DELETE revokes it. The icalendar library writes the feed.

A timed task starts and is due at its due_at, on the wall clock of the user's time zone (the
feed carries the zone's VTIMEZONE), so that a calendar expands a weekly 09:00 rule at 09:00
across daylight saving, as taskapi does; an all-day task on its day."""

import secrets
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from flask import current_app, g, url_for
from flask.views import MethodView
from icalendar import Alarm, Calendar, Todo, vRecur

from .api import Blueprint, abort
from .db import database
from .models import CalendarFeed, Task, User
from .ordering import lock_user
from .schemas import CalendarFeedSchema
from .tokens import hash_token

blp = Blueprint(
    "calendars",
    __name__,
    url_prefix="/api",
    description="A secret URL serving the user's open tasks that have a due, for calendar apps.",
)
NOT_FOUND = "No calendar feed here: it was revoked, or never was."
PRIORITIES = {"high": 1, "medium": 5, "low": 9}  # RFC 5545: 1 highest, 9 lowest, 0 none


@blp.route("/auth/calendar-feed")
class CalendarFeedUrl(MethodView):
    @blp.response(201, CalendarFeedSchema)
    def post(self):
        """A new secret URL for the user's calendar feed; an earlier one stops working."""
        token = secrets.token_urlsafe(32)
        with database.atomic():
            lock_user()  # two at once: one replaces the other, rather than both failing
            CalendarFeed.delete().where(CalendarFeed.user == g.user.id).execute()
            CalendarFeed.create(token_hash=hash_token(token), user=g.user.id)
        return {"url": url_for(".Feed", token=token, _external=True)}

    @blp.response(204)
    def delete(self):
        """Revoke the calendar feed's URL (if there is one)."""
        CalendarFeed.delete().where(CalendarFeed.user == g.user.id).execute()


@blp.route("/calendar/<token>.ics")
class Feed(MethodView):
    @blp.response(200, content_type="text/calendar")
    @blp.alt_response(404, response="NOT_FOUND")
    def get(self, token):
        """The feed: no bearer token, the URL is the secret."""
        feed = CalendarFeed.get_or_none(CalendarFeed.token_hash == hash_token(token))
        if feed is None:
            abort(404, message=NOT_FOUND)
        user = User.get_by_id(feed.user_id)
        calendar = write_calendar(user, get_tasks(user.id))
        headers = {"Content-Type": "text/calendar; charset=utf-8", "Cache-Control": "private"}
        return current_app.response_class(calendar.to_ical(), 200, headers)


def get_tasks(user_id):
    due = [~Task.completed, Task.due_key.is_null(False)]
    return list(Task.of(user_id).where(*due).order_by(Task.due_key, Task.id))


def write_calendar(user, tasks):
    calendar = Calendar()
    calendar.add("prodid", "-//taskapi//tasks//EN")
    calendar.add("version", "2.0")
    calendar.add("x-wr-calname", "Tasks")
    zone = ZoneInfo(user.time_zone)
    for task in tasks:
        calendar.add_component(write_todo(task, zone))
    # The zone's changes over the years the tasks are due (icalendar stops at 2038 otherwise)
    years = [(task.due_date or task.due_at).year for task in tasks] or [2000]
    first, last = max(min(years) - 1, 1970), min(max(years) + 30, 9998)
    calendar.add_missing_timezones(date(first, 1, 1), date(max(last, 2038), 1, 1))
    return calendar


def write_todo(task, zone):
    todo = Todo()
    todo.add("uid", f"task-{task.id}@taskapi")
    todo.add("dtstamp", task.updated_at)
    todo.add("created", task.created_at)
    todo.add("last-modified", task.updated_at)
    todo.add("summary", task.title)
    if task.description:
        todo.add("description", task.description)
    if task.priority in PRIORITIES:
        todo.add("priority", PRIORITIES[task.priority])
    if task.tags:
        todo.add("categories", task.tags)
    todo.add("status", "NEEDS-ACTION")
    due = task.due_date if task.due_date is not None else wall_clock(task.due_at, zone)
    todo.add("dtstart", due)  # the recurrence's first occurrence (RFC 5545 needs it)
    todo.add("due", due)
    if task.recurrence:
        todo.add("rrule", vRecur.from_ical(task.recurrence["rule"]))
    for reminder in task.reminders:
        todo.add_component(write_alarm(task, reminder))
    return todo


def wall_clock(when, zone):
    """The time in the user's zone; in UTC where that zone's clock is past the last year."""
    try:
        return when.astimezone(zone)
    except OverflowError:
        return when


def write_alarm(task, reminder):
    alarm = Alarm()
    alarm.add("action", "DISPLAY")
    alarm.add("description", task.title)
    if "before" in reminder:
        alarm.add("trigger", -timedelta(seconds=reminder["before"]), parameters={"RELATED": "END"})
    else:
        alarm.add("trigger", datetime.fromisoformat(reminder["at"]))
    return alarm
