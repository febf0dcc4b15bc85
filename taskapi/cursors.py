"""Keyset pagination of the task list: the cursor `after` (opaque to clients) and the rows
that follow it, so that a deep page costs what the first one does."""

import functools
from datetime import datetime

from flask import current_app, g
from itsdangerous import BadData, URLSafeSerializer
from peewee import Tuple

from .api import abort
from .models import Task, TimestampField

FORGED = "Not a cursor this list gave you: send back next_cursor as it came."


def dump_cursor(sort, column, row):
    """The cursor after `row` in this sort: its sort key and id, signed with this user's id."""
    key = row[column.name]
    if isinstance(key, datetime):
        key = key.isoformat()
    return get_serializer().dumps([g.user.id, sort, key, row["id"]])


def load_cursor(sort, column, cursor):
    """(sort key, id) as the database compares them; 422 for a cursor this user was not
    given for this sort (forged, cut short, another user's or another sort's)."""
    try:
        user_id, given_sort, key, task_id = get_serializer().loads(cursor)
    except (BadData, TypeError, ValueError):
        refuse(FORGED)
    if user_id != g.user.id:
        refuse(FORGED)
    if given_sort != sort:
        refuse(f"This cursor belongs to sort={given_sort}, not sort={sort}.")
    if key is not None and isinstance(column, TimestampField):
        key = datetime.fromisoformat(key)
    return column.db_value(key), task_id


def get_after(column, descending, key, task_id):
    """The rows after (key, id) in the list's order, as conditions to read in turn: NULL keys
    (tasks without a due date) come last either way, read apart, since a row value with
    "OR due_key IS NULL" is no longer a range an index on (user_id, column, id) can seek."""
    same_key = Task.id < task_id if descending else Task.id > task_id
    if key is None:
        return [column.is_null() & same_key]
    keyed, at = Tuple(column, Task.id), Tuple(key, task_id)
    after = keyed < at if descending else keyed > at
    return [after, column.is_null()] if column.null else [after]


def get_serializer():
    return get_serializer_for(current_app.config["BETTER_AUTH_SECRET"])


@functools.lru_cache(maxsize=8)
def get_serializer_for(secret):
    """Made once: made for each page, it took four times what signing the cursor takes."""
    return URLSafeSerializer(secret, salt="tasks-after")


def refuse(message):
    abort(422, errors={"query": {"after": [message]}})
