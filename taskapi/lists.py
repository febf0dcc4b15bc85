"""The lists blueprint: a user's lists (projects), each holding tasks; the inbox is one of them."""

from flask import g, request, url_for
from flask.views import MethodView
from werkzeug.http import quote_etag

from . import bounds, events, ordering
from .api import Blueprint, abort
from .db import database
from .models import Task, TaskList, utcnow
from .schemas import BIGINT_MAX, ListPatchSchema, ListSchema, PreviousSchema, SyncArgsSchema
from .tasks import IF_MATCH, IF_NONE_MATCH, get_etag, get_tombstone_cutoff, with_etag

blp = Blueprint(
    "lists",
    __name__,
    url_prefix="/api/users/<user_id>/lists",
    description="A user's lists, in the order the user sets. Every user has one inbox "
    "(`is_inbox`), where tasks go unless put elsewhere; it cannot be deleted. Also served "
    "without the `/users` segment (`/api/{user_id}/lists...`).",
)
LIST_ID = f"<int(min=1, max={BIGINT_MAX}):list_id>"  # anything else is 404
NOT_FOUND = "List not found."
STALE = "The list changed since you read it (its ETag no longer matches); fetch it again."
ETAG = {"ETag": {"description": "Version of the list, for If-Match", "schema": {"type": "string"}}}


@blp.route("")
class Lists(MethodView):
    @blp.arguments(SyncArgsSchema(), location="query")
    @blp.response(200, ListSchema(many=True))
    def get(self, args, user_id):
        """The user's lists, in their order."""
        lists = TaskList.of(g.user.id)
        if args["include_deleted"]:
            cutoff = get_tombstone_cutoff(utcnow())
            kept = TaskList.deleted_at.is_null() | (TaskList.deleted_at > cutoff)
            lists = TaskList.select().where(TaskList.user == g.user.id, kept)
        if "updated_since" in args:
            lists = lists.where(TaskList.updated_at > args["updated_since"])
        return lists.order_by(TaskList.position, TaskList.id)

    @blp.arguments(ListSchema())
    @blp.response(201, ListSchema, headers={"Location": {"schema": {"type": "string"}}, **ETAG})
    def post(self, fields, user_id):
        """Make a list; it goes last."""
        with database.atomic():
            ordering.lock_user()
            bounds.check_list_quota()
            position = ordering.last_list_position()
            found = TaskList.create(user=g.user.id, position=position, **fields)
        location = url_for(".ListById", user_id=user_id, list_id=found.id)
        return found, {"Location": location, "ETag": quote_etag(get_list_etag(found))}


@blp.route(f"/{LIST_ID}")
class ListById(MethodView):
    @blp.response(200, ListSchema, headers=ETAG)
    @blp.alt_response(304, response="NOT_MODIFIED")
    @blp.alt_response(404, response="NOT_FOUND")
    @blp.doc(parameters=[IF_NONE_MATCH])
    def get(self, user_id, list_id):
        """Get one list, with its ETag."""
        found = get_list(list_id)
        return with_etag(found, get_list_etag(found))

    @blp.arguments(ListPatchSchema(partial=True))
    @blp.response(200, ListSchema, headers=ETAG)
    @blp.alt_response(404, response="NOT_FOUND")
    @blp.doc(parameters=[IF_MATCH])
    def patch(self, fields, user_id, list_id):
        """Rename or recolour a list."""
        found = get_list(list_id, check_if_match=True)
        conditions = [TaskList.id == list_id, TaskList.deleted_at.is_null()]
        if request.if_match:  # and unchanged until the UPDATE itself
            conditions.append(TaskList.updated_at == found.updated_at)
        query = TaskList.update(**fields, updated_at=utcnow()).where(*conditions)
        changed = next(iter(query.returning(TaskList).execute()), None)
        if changed is None:  # changed or deleted since it was read, a moment ago
            abort(412, message=STALE) if request.if_match else abort(404, message=NOT_FOUND)
        return changed, {"ETag": quote_etag(get_list_etag(changed))}

    @blp.response(204)
    @blp.alt_response(404, response="NOT_FOUND")
    @blp.alt_response(409, response="CONFLICT")
    @blp.doc(parameters=[IF_MATCH])
    def delete(self, user_id, list_id):
        """Delete a list and its tasks; syncing clients see them as tombstones for a while."""
        now = utcnow()
        with database.atomic():
            ordering.lock_user()
            if get_list(list_id, check_if_match=True).is_inbox:
                abort(409, message="The inbox cannot be deleted.")
            TaskList.update(deleted_at=now, updated_at=now).where(TaskList.id == list_id).execute()
            tasks = Task.update(deleted_at=now, updated_at=now).returning(Task.id)
            deleted = tasks.where(Task.task_list == list_id, Task.deleted_at.is_null()).execute()
            events.deleted([task.id for task in deleted])
        expired = TaskList.deleted_at < get_tombstone_cutoff(now)  # their tasks go with them
        TaskList.delete().where(TaskList.user == g.user.id, expired).execute()


@blp.route(f"/{LIST_ID}/move")
class ListMove(MethodView):
    @blp.arguments(PreviousSchema())
    @blp.response(200, ListSchema, headers=ETAG)
    @blp.alt_response(404, response="NOT_FOUND")
    def post(self, fields, user_id, list_id):
        """Move a list right after the list `previous_id` (first by default)."""
        with database.atomic():
            ordering.lock_user()
            moved = ordering.move_list(get_list(list_id), fields["previous_id"])
        return moved, {"ETag": quote_etag(get_list_etag(moved))}


def get_list(list_id, check_if_match=False):
    """The user's live list, or a 404; with check_if_match, a 412 if If-Match names another
    version."""
    found = TaskList.of(g.user.id).where(TaskList.id == list_id).first()
    if found is None and check_if_match and request.if_match:
        abort(412, message=STALE)  # the version the client read is what went missing
    if found is None:
        abort(404, message=NOT_FOUND)
    stale = check_if_match and request.if_match and not request.if_match.star_tag
    if stale and not request.if_match.contains(get_list_etag(found)):
        abort(412, message=STALE)
    return found


def get_list_etag(found):
    """The count changes with the list's tasks, not with its updated_at: it is part of the
    version too, so a GET never answers 304 over a stale count."""
    return get_etag(found, found.task_count)
