"""The tasks blueprint: one user's task list and each task, always filtered by that user in SQL."""

import hashlib
import json
from contextlib import contextmanager
from datetime import timedelta

from flask import current_app, g, request, url_for
from flask.views import MethodView
from peewee import SQL, Case, IntegrityError, fn
from werkzeug.http import quote_etag

from . import bounds, cursors, events, ordering, recurrence, reminders
from .api import Blueprint, abort
from .dates import due_values, get_time_zone
from .db import Prepared, Slot, database
from .models import TASK_BY_ID, Completion, IdempotencyKey, Task, TaskList, TaskTag, utcnow
from .schemas import (
    BIGINT_MAX,
    DEFAULT_SORT,
    SORTABLE,
    DeletedSchema,
    TaskBulkDeleteArgsSchema,
    TaskBulkUpdateSchema,
    TaskCompletionSchema,
    TaskCreateSchema,
    TaskMoveSchema,
    TaskPatchSchema,
    TaskQueryArgsSchema,
    TaskSchema,
)

blp = Blueprint(
    "tasks",
    __name__,
    url_prefix="/api/users/<user_id>/tasks",
    description="A user's tasks. `user_id` must be the token's user (else 403). Every route "
    "here is also served without the `/users` segment (`/api/{user_id}/tasks...`): aliases for "
    "frontends written against that layout.",
)
TASK_ID = f"<int(min=1, max={BIGINT_MAX}):task_id>"  # anything else is 404
NOT_FOUND = "Task not found."
STALE = "The task changed since you read it (its ETag no longer matches); fetch it again."
KEY_LIFETIME = timedelta(hours=24)
# Fields newer than the first release
LATER = {"list_id", "parent_id", "due_date", "recurrence", "reminders"}
# What recurrences and reminders depend on: a write of one of these to a task that has either
# takes the long way (write_scheduled).
SCHEDULED = {"completed", "due_at", "due_date", "recurrence", "reminders"}
COUNT_ALL = fn.COUNT(SQL("*"))
# sort=position (with list_id) is the list as it is shown: by path, each task before its
# subtasks; sort=due_at orders all-day tasks and the others together (see dates.py).
SORTS = {**{name: getattr(Task, name) for name in SORTABLE}, "position": Task.path}
SORTS["due_at"] = Task.due_key
FILTERS = {
    "list_id": lambda value: Task.task_list == value,
    "parent_id": lambda value: Task.parent == value,
    "completed": lambda value: Task.completed == value,
    "priority": lambda value: Task.priority == value,
    "due_before": lambda value: Task.due_key < value,
    "due_after": lambda value: Task.due_key > value,
    "overdue": lambda value: is_overdue() if value else ~is_overdue(),
    "updated_since": lambda value: Task.updated_at > value,
    "q": lambda value: Task.title.contains(value) | Task.description.contains(value),
    "tag": lambda tags: Task.id.in_(
        TaskTag.select(TaskTag.task)
        .where(TaskTag.user == g.user.id, TaskTag.tag.in_(tags))
        .group_by(TaskTag.task)
        .having(fn.COUNT(TaskTag.tag) == len(set(tags)))
    ),
}
ETAG = {"ETag": {"description": "Version of the task, for If-Match", "schema": {"type": "string"}}}
IF_MATCH = {
    "in": "header",
    "name": "If-Match",
    "required": False,
    "description": "The ETag you read: the write happens only if that version is still the "
    "current one (else 412).",
    "schema": {"type": "string"},
}
IF_NONE_MATCH = {"in": "header", "name": "If-None-Match", "schema": {"type": "string"}}
IDEMPOTENCY_KEY = {
    "in": "header",
    "name": "Idempotency-Key",
    "description": "Retries with the same key (and body) within 24 hours create nothing new "
    "and get the first response again.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
}


@blp.route("")
class Tasks(MethodView):
    @blp.arguments(TaskQueryArgsSchema(), location="query")
    @blp.response(200, TaskSchema(many=True))
    @blp.paginate(page_size=100, max_page_size=500)
    def get(self, args, user_id, pagination_parameters):
        """List the user's tasks, filtered and sorted (newest first by default): by page
        number, or after a page's next_cursor, which costs as little however deep."""
        page, sort = pagination_parameters, args["sort"]
        if "after" in args:
            tasks, page.item_count = get_page_after(args, page.page_size + 1)
        else:
            tasks, page.item_count = get_page(args, page)
        page.after = "after" in args
        if len(tasks) > page.page_size:  # the row past the page: another page follows
            tasks = tasks[: page.page_size]
            page.next_cursor = cursors.dump_cursor(sort, get_sort(sort)[0], tasks[-1])
        return tasks

    @blp.arguments(TaskCreateSchema())
    @blp.response(201, TaskSchema, headers={"Location": {"schema": {"type": "string"}}, **ETAG})
    @blp.doc(parameters=[IDEMPOTENCY_KEY])
    def post(self, fields, user_id):
        """Create a task, last among its siblings; send an Idempotency-Key to make retries safe."""
        key = request.headers.get("Idempotency-Key")
        if key is not None and not 0 < len(key) <= 255:
            abort(422, message="Idempotency-Key must be 1 to 255 characters.")
        if not key:  # already at the quota: refused without a transaction (a retry may not be)
            bounds.check_task_quota(g.user.task_count)
        task = create_task(fields, key)
        if isinstance(task, str):  # a retry: the first response again
            location = url_for(".TaskById", user_id=user_id, task_id=json.loads(task)["id"])
            return respond(task, 201, Location=location)
        return task, {"Location": get_location(task), "ETag": quote_etag(get_etag(task))}

    @blp.arguments(TaskBulkUpdateSchema())
    @blp.response(200, TaskSchema(many=True))
    @blp.alt_response(404, response="NOT_FOUND")
    def patch(self, fields, user_id):
        """Mark several tasks completed or not: all of them, or none if one is missing."""
        ids = set(fields["ids"])
        aimed = get_occurrences(ids)  # the occurrences these complete, as they were before waiting
        with database.atomic():
            ordering.lock_user()  # several rows, in any order: writers of this user wait in turn
            now = utcnow()
            moving = get_recurring(ids, fields)
            recurring = [write_planned(task, {"completed": True}, aimed, now) for task in moving]
            values = {"completed": fields["completed"], "updated_at": now}
            values["completed_at"] = get_completion_time(fields["completed"], now)
            plain = [*mine(), Task.id.in_(ids - {task.id for task in recurring})]
            others = list(Task.update(**values).where(*plain).returning(Task).execute())
            tasks = sorted([*recurring, *others], key=lambda task: task.id)
            if len(tasks) < len(ids):
                missing = sorted(ids - {task.id for task in tasks})
                abort(404, message=f"Tasks not found, none changed: {missing}")
            record_completions(others, now)
            events.written(others)
        return tasks

    @blp.arguments(TaskBulkDeleteArgsSchema(), location="query")
    @blp.response(200, DeletedSchema)
    def delete(self, args, user_id):
        """Clear the completed tasks, of one list or all, with their subtasks (as tombstones)."""
        in_list = [FILTERS["list_id"](args["list_id"])] if "list_id" in args else []
        with database.atomic():
            ordering.lock_user()
            now = utcnow()  # after waiting: a sync that ran meanwhile must not miss these
            query = Task.update(deleted_at=now, updated_at=now).where(*mine(), *in_list)
            cleared = [task.id for task in query.where(Task.completed).returning(Task.id)]
            cleared += delete_subtasks(cleared, now)
            events.deleted(cleared)
        return {"deleted": len(cleared)}


@blp.route(f"/{TASK_ID}")
class TaskById(MethodView):
    @blp.response(200, TaskSchema, headers=ETAG)
    @blp.alt_response(304, response="NOT_MODIFIED")
    @blp.alt_response(404, response="NOT_FOUND")
    @blp.doc(parameters=[IF_NONE_MATCH])
    def get(self, user_id, task_id):
        """Get one task, with its ETag."""
        task = get_task(task_id)
        return with_etag(task, get_etag(task))

    @blp.arguments(TaskSchema())
    @blp.response(200, TaskSchema, headers=ETAG)
    @blp.alt_response(404, response="NOT_FOUND")
    @blp.doc(parameters=[IF_MATCH])
    def put(self, fields, user_id, task_id):
        """Replace a task: omitted optional fields go back to their defaults."""
        return update_task(task_id, fields)

    @blp.arguments(TaskPatchSchema(partial=True))
    @blp.response(200, TaskSchema, headers=ETAG)
    @blp.alt_response(404, response="NOT_FOUND")
    @blp.doc(parameters=[IF_MATCH])
    def patch(self, fields, user_id, task_id):
        """Change some fields of a task."""
        return update_task(task_id, fields)

    @blp.response(204)
    @blp.alt_response(404, response="NOT_FOUND")
    @blp.doc(parameters=[IF_MATCH])
    def delete(self, user_id, task_id):
        """Delete a task and its subtasks; syncing clients see them as tombstones for a while."""
        with database.atomic():
            ordering.lock_user()
            now = utcnow()
            query = Task.update(deleted_at=now, updated_at=now)
            if not query.where(*mine(), Task.id == task_id, *if_match(task_id)).execute():
                abort_missing()
            events.deleted([task_id, *delete_subtasks([task_id], now)])
        Task.delete().where(
            Task.user == g.user.id, Task.deleted_at < get_tombstone_cutoff(now)
        ).execute()


@blp.route(f"/{TASK_ID}/complete")
class TaskCompletion(MethodView):
    @blp.response(200, TaskSchema, headers=ETAG)
    @blp.alt_response(404, response="NOT_FOUND")
    @blp.doc(parameters=[IF_MATCH])
    def patch(self, user_id, task_id):
        """Toggle a task between completed and not."""
        return update_task(task_id, {"completed": ~Task.completed})


@blp.route(f"/{TASK_ID}/move")
class TaskMove(MethodView):
    @blp.arguments(TaskMoveSchema())
    @blp.response(200, TaskSchema, headers=ETAG)
    @blp.alt_response(404, response="NOT_FOUND")
    def post(self, fields, user_id, task_id):
        """Move a task with its subtasks: into a list (its own by default), under a parent
        (none by default), right after the sibling `previous_id` (first by default)."""
        with database.atomic():
            ordering.lock_user()
            task = ordering.move_task(get_task(task_id), fields)
            events.written([task])
        return task, {"ETag": quote_etag(get_etag(task))}


@blp.route(f"/{TASK_ID}/completions")
class TaskCompletions(MethodView):
    @blp.response(200, TaskCompletionSchema(many=True))
    @blp.alt_response(404, response="NOT_FOUND")
    @blp.paginate(page_size=100, max_page_size=500)
    def get(self, user_id, task_id, pagination_parameters):
        """A task's completions, newest first: each time it was completed, with the due it
        had then (a recurring task's due moved on after each)."""
        get_task(task_id)
        query = Completion.select().where(Completion.task == task_id)
        pagination_parameters.item_count = query.count()
        newest = query.order_by(Completion.completed_at.desc(), Completion.id.desc())
        return newest.paginate(pagination_parameters.page, pagination_parameters.page_size)


def delete_subtasks(parents, now):
    """The live subtasks of `parents` (ids) are deleted at `now` too, a level per statement,
    each naming the ids the one before deleted; returns the ids of all that went."""
    deleted = []
    for _ in range(ordering.MAX_DEPTH - 1):
        query = Task.update(deleted_at=now, updated_at=now).where(*mine(), Task.parent.in_(parents))
        parents = [task.id for task in query.returning(Task.id).execute()]
        if not parents:
            break
        deleted += parents
    return deleted


def mine():
    return [Task.user == g.user.id, Task.deleted_at.is_null()]


def get_task(task_id):
    task = TASK_BY_ID.first(user_id=g.user.id, id=task_id)
    if task is None:
        abort(404, message=NOT_FOUND)
    return task


def is_overdue():
    return Task.due_key.is_null(False) & (Task.due_key < utcnow()) & ~Task.completed


def is_plain(args):
    return not args["include_deleted"] and not args.keys() & FILTERS.keys()


def get_count(args):
    """The total, where a counter kept by triggers has it (the user's tasks, or one list's);
    else None: the page counts its matches as it reads them (one scan)."""
    if is_plain(args):
        return g.user.task_count
    if is_one_list(args):
        counted = LIST_TASK_COUNT.dicts(user_id=g.user.id, list_id=args["list_id"])
        return counted[0]["task_count"] if counted else 0
    return None


def is_one_list(args):
    return not args["include_deleted"] and args.keys() & FILTERS.keys() == {"list_id"}


def get_prepared(args):
    if is_plain(args) and args["sort"] == DEFAULT_SORT:
        return NEWEST_TASKS
    if is_one_list(args) and args["sort"] == "position":
        return LIST_AS_SHOWN
    return None


def get_tombstone_cutoff(now):
    """Deleted tasks and lists older than this are forgotten (TOMBSTONE_RETENTION_DAYS)."""
    return now - timedelta(days=current_app.config["TOMBSTONE_RETENTION_DAYS"])


def get_tasks(args):
    if args["include_deleted"]:
        kept = Task.deleted_at.is_null() | (Task.deleted_at > get_tombstone_cutoff(utcnow()))
        query = Task.select(*Task.READ).where(Task.user == g.user.id, kept)
    else:
        query = Task.of(g.user.id)
    conditions = [FILTERS[name](value) for name, value in args.items() if name in FILTERS]
    return query.where(*conditions) if conditions else query


def get_page(args, page):
    """A page by number (OFFSET), with the row after it if there is one, and the total."""
    count, limit = get_count(args), page.page_size + 1
    # Rows as dicts: no model objects to build, and TaskSchema dumps them as they are.
    if page.first_item >= BIGINT_MAX:  # OFFSET would fail in SQL; no such page holds a row
        tasks = []
    elif prepared := get_prepared(args):  # the usual lists, their SQL built once
        list_id, offset = args.get("list_id"), page.first_item
        tasks = prepared.dicts(user_id=g.user.id, list_id=list_id, limit=limit, offset=offset)
    else:
        selected = get_sorted(args)
        if count is None:
            selected = selected.select_extend(COUNT_ALL.over().alias("total"))
        tasks = list(selected.limit(limit).offset(page.first_item).dicts())
    if count is None:
        count = tasks[0]["total"] if tasks else get_tasks(args).count()
    return tasks, count


def get_page_after(args, limit):
    """The rows after the cursor (keyset pagination: no rows skipped to get there), and the
    total; 422 for a cursor this user was not given for this sort."""
    if "page" in request.args:  # checked here, not by the schema: the plain list pays nothing
        cursors.refuse("Send after or page, not both.")
    column, descending = get_sort(args["sort"])
    key, task_id = cursors.load_cursor(args["sort"], column, args["after"])
    tasks = []
    for after in cursors.get_after(column, descending, key, task_id):
        if len(tasks) < limit:
            tasks += list(get_sorted(args).where(after).limit(limit - len(tasks)).dicts())
    count = get_count(args)
    return tasks, get_tasks(args).count() if count is None else count


def get_sorted(args):
    """The matching tasks in the list's order, with the sort key a cursor needs (due_key is
    not read otherwise)."""
    selected = get_tasks(args).order_by(*get_order(args["sort"]))
    column = get_sort(args["sort"])[0]
    return selected.select_extend(column) if column is Task.due_key else selected


def get_sort(sort):
    """The column and whether descending, for a sort such as "-created_at"."""
    return SORTS[sort.lstrip("-")], sort.startswith("-")


def get_order(sort):
    column, descending = get_sort(sort)
    nulls = {"nulls": "LAST"} if column.null else {}  # tasks without a due date come last
    if descending:
        return [column.desc(**nulls), Task.id.desc()]
    return [column.asc(**nulls), Task.id.asc()]


# The lists a frontend asks for most (every task, newest first; one list as it is shown), and
# one list's total, their SQL built once.
NEWEST_TASKS = Prepared(
    Task.of(Slot("user_id"))
    .order_by(*get_order(DEFAULT_SORT))
    .limit(Slot("limit"))
    .offset(Slot("offset"))
)
LIST_AS_SHOWN = Prepared(
    Task.of(Slot("user_id"))
    .where(Task.task_list == Slot("list_id"))
    .order_by(*get_order("position"))
    .limit(Slot("limit"))
    .offset(Slot("offset"))
)
LIST_TASK_COUNT = Prepared(
    TaskList.select(TaskList.task_count)
    .where(TaskList.user == Slot("user_id"), TaskList.id == Slot("list_id"))
    .limit(1)
)


def get_etag(found, *more):
    """Every write moves updated_at, so it names the version (with `more`, what else does)."""
    version = ":".join([str(found.id), found.updated_at.isoformat(), *map(str, more)])
    return hashlib.sha1(version.encode()).hexdigest()


def with_etag(found, etag):
    """A task or a list with its ETag; a bodiless 304 if the client has that version."""
    if request.if_none_match.contains(etag):
        return respond(None, 304, ETag=quote_etag(etag))
    return found, {"ETag": quote_etag(etag)}


def respond(body, status, **headers):
    """A response flask-smorest passes through as it is (no schema dumps it)."""
    return current_app.response_class(body, status, headers, mimetype="application/json")


def get_location(task):
    return url_for(".TaskById", user_id=task.user_id, task_id=task.id)


def get_completion_time(completed, now):
    """Kept when a completed task is completed again, cleared when it is reopened."""
    if completed is True:
        return Case(None, [(Task.completed, Task.completed_at)], now)
    if completed is False:
        return None
    return Case(None, [(Task.completed, None)], now)  # a toggle: the opposite of the old value


def abort_missing():
    """404; or 412 under If-Match, since the version the client read is what went missing."""
    if request.if_match:
        abort(412, message=STALE)
    abort(404, message=NOT_FOUND)


def if_match(task_id):
    """With If-Match, the write applies only to the version the client read (else 412)."""
    if not request.if_match or request.if_match.star_tag:
        return []
    task = get_task(task_id)
    if not request.if_match.contains(get_etag(task)):
        abort(412, message=STALE)
    return [Task.updated_at == task.updated_at]  # and unchanged until the UPDATE itself


def update_task(task_id, fields):
    """A write of `fields`; one of SCHEDULED, to a task that has or gets a recurrence or
    reminders, takes the long way (write_scheduled). A completion first reads the occurrence
    it completes, before any write of it can wait for another's."""
    aimed = get_occurrences([task_id]) if may_complete(fields) else {}
    scheduled = is_scheduled(fields) or is_scheduled(aimed.get(task_id, {}))
    only = (
        [Task.recurrence.is_null(), Task.reminders.is_null()] if fields.keys() & SCHEDULED else []
    )
    with events.transaction():
        task = not scheduled and write_plain(task_id, fields, only)
        if not task and only:
            task = write_scheduled(task_id, fields, aimed or get_occurrences([task_id]))
        if not task:
            abort_missing()
    return task, {"ETag": quote_etag(get_etag(task))}


def write_plain(task_id, fields, only):
    if fields.get("due_date") is not None:  # its key needs the time zone as it is (see dates)
        with database.atomic():
            ordering.lock_user()
            return write_task(task_id, fields, only)
    if may_complete(fields):  # with its record (see record_completions)
        with database.atomic():
            return write_task(task_id, fields, only)
    return write_task(task_id, fields, only)


def write_task(task_id, fields, only):
    now = utcnow()
    values = {**fields, **due_values(fields), "updated_at": now}
    if "completed" in fields:
        values["completed_at"] = get_completion_time(fields["completed"], now)
    conditions = [*mine(), Task.id == task_id, *only, *if_match(task_id)]
    # One statement: the database's triggers rewrite task_tags if the tags changed.
    task = next(iter(Task.update(**values).where(*conditions).returning(Task).execute()), None)
    if task is not None and may_complete(fields):
        record_completions([task], now)
    if task is not None:
        events.written([task])
    return task


def is_scheduled(task):
    return bool(task.get("recurrence") or task.get("reminders"))


def write_scheduled(task_id, fields, aimed):
    """A write to a task that has or gets a recurrence or reminders, under the user's lock.
    `aimed` is the occurrence as this request read it before waiting for the lock: of several
    requests that complete the same occurrence at once, the first moves the task on, and the
    others find it moved and complete nothing (see is_repeat)."""
    with database.atomic():
        ordering.lock_user()
        only = if_match(task_id)
        return write_planned(get_task(task_id), fields, aimed, utcnow(), only)


def write_planned(task, fields, aimed, now, only=()):
    """The write, once the lock is held. A completion of an occurrence that was completed
    already is a repeat: what it says of the due, the rule, reminders and completion is
    dropped."""
    if is_repeat(task, fields, aimed.get(task.id)):
        fields = {name: value for name, value in fields.items() if name not in SCHEDULED}
    with refusing_what_cannot_run():
        time_zone = get_time_zone()
        planned, completion = recurrence.plan(task, fields, now, time_zone)
        planned = reminders.follow(task, planned, time_zone, moved=completion is not None)
    values = {**planned, **due_values(planned), "updated_at": now}
    if "completed" in planned:
        values["completed_at"] = get_completion_time(planned["completed"], now)
    query = Task.update(**values).where(Task.id == task.id, *only).returning(Task)
    written = next(iter(query.execute()), None)
    if written is not None and "reminders" in planned:
        reminders.schedule(written)
    if written is not None and completion is not None:
        Completion.insert(task=task.id, completed_at=now, **completion).execute()
    elif written is not None:
        record_completions([written], now)
    if written is not None:
        events.written([written], moved_on={task.id} if completion else ())
    return written


OCCURRENCE = [Task.due_at, Task.due_date, Task.recurrence, Task.reminders]


def get_occurrences(ids):
    """The occurrences the tasks are at now, by id."""
    found = Task.of(g.user.id, Task.id, *OCCURRENCE).where(Task.id.in_(ids))
    return {task.id: get_occurrence(task) for task in found}


def get_occurrence(task):
    return {field.name: getattr(task, field.name) for field in OCCURRENCE}


def may_complete(fields):
    """True, or a toggle (see TaskCompletion)."""
    return fields.get("completed", False) is not False


def is_repeat(task, fields, was):
    """Whether a write completes an occurrence of a recurring task that is completed: another
    request moved the task on since this one read it, or it sends back a completed due."""
    if not may_complete(fields) or task.completed or task.recurrence is None:
        return False
    if was != get_occurrence(task):
        return True
    sent, done = fields.get("due_at"), Completion.due_at
    if sent is None:
        sent, done = fields.get("due_date"), Completion.due_date
    if sent is None or sent in (task.due_at, task.due_date):
        return False
    return task.completions.where(done == sent).exists()


def get_recurring(ids, fields):
    """Of the tasks a bulk write completes, the recurring ones (they move on instead)."""
    if fields["completed"] is not True:
        return []
    recurring = [Task.id.in_(ids), Task.recurrence.is_null(False), ~Task.completed]
    return list(Task.of(g.user.id).where(*recurring))


def record_completions(tasks, now):
    """Each task completed by this write (its completed_at is now) gets its record."""
    done = [task for task in tasks if task.completed and task.completed_at == now]
    if done:
        Completion.insert_many([get_record(task, now) for task in done]).execute()


def get_record(task, now):
    return {"task": task.id, "completed_at": now, "due_at": task.due_at, "due_date": task.due_date}


def create_task(fields, key):
    """The new task; or, for a key used before with the same body, the first response's JSON."""
    # Fields newer than the first release leave the hash as it was when absent: a retry from
    # before an upgrade still finds its key.
    sent = {name: value for name, value in fields.items() if name not in LATER or value}
    body = json.dumps(sent, sort_keys=True, default=str)
    request_hash = hashlib.sha256(body.encode()).hexdigest()
    try:
        with database.atomic():
            if key:
                claim_key(key, request_hash)
            bounds.check_task_quota(ordering.lock_user())
            place = ordering.place_new_task(fields.pop("list_id"), fields.pop("parent_id"))
            completed_at = utcnow() if fields["completed"] else None
            fields |= place | due_values(fields)
            check_recurrence(fields)
            with refusing_what_cannot_run():
                fields["reminders"] = reminders.plan(fields["reminders"], fields["due_key"])
            task = Task.create(user=g.user.id, completed_at=completed_at, **fields)
            if task.reminders:
                reminders.schedule(task)
            events.created(task)
            if key:
                response = json.dumps(TaskSchema().dump(task))
                IdempotencyKey.update(response=response).where(*this_key(key)).execute()
        return task
    except IntegrityError:
        earlier = key and IdempotencyKey.get_or_none(*this_key(key))
        if not earlier:
            raise
    if earlier.request_hash != request_hash:
        abort(422, message="This Idempotency-Key was already used with a different body.")
    return earlier.response


def check_recurrence(fields):
    """422 unless a new task's recurrence can run from its due."""
    if fields.get("recurrence") is None:
        return
    repeat = fields["recurrence"] = {"from": "due", **fields["recurrence"]}
    with refusing_what_cannot_run():
        recurrence.check(repeat, fields["due_at"], fields["due_date"], get_time_zone())


@contextmanager
def refusing_what_cannot_run():
    """A recurrence or reminders that cannot run are the client's to fix: 422."""
    try:
        yield
    except recurrence.RuleError as error:
        abort(422, errors={"json": {"recurrence": [str(error)]}})
    except reminders.ReminderError as error:
        abort(422, errors={"json": {"reminders": [str(error)]}})


def this_key(key):
    return [IdempotencyKey.user == g.user.id, IdempotencyKey.idempotency_key == key]


def claim_key(key, request_hash):
    """First in the transaction: a concurrent retry waits on this row, then finds it taken."""
    expired = IdempotencyKey.created_at < utcnow() - KEY_LIFETIME
    IdempotencyKey.delete().where(IdempotencyKey.user == g.user.id, expired).execute()
    IdempotencyKey.create(user=g.user.id, idempotency_key=key, request_hash=request_hash)
