"""Where tasks sit: their list, their parent and their place among their siblings.

Every write that changes where tasks or lists sit runs in a transaction that begins with
lock_user(), so two of them never decide on the same stale picture: the second waits for the
first and then sees what it did. No two live siblings ever share a position, and a move can
never put a task under its own subtree, however requests race."""

from flask import g
from peewee import Value, fn

from .api import abort
from .models import Task, TaskList, User, utcnow
from .positions import (
    ancestor_path,
    between,
    child_path,
    depth,
    position_at,
    spread,
    subtree_end,
)

MAX_DEPTH = 4  # a top-level task and three levels of subtasks
NO_LIST = "No such list."
NO_TASK = "No such task in this list."
TOO_DEEP = f"Tasks nest at most {MAX_DEPTH} levels deep."


def lock_user():
    """Lock the user's row for the rest of the transaction; being a write, it also takes
    SQLite's write lock first, which SQLite needs to wait its turn rather than fail."""
    User.update(task_count=User.task_count).where(User.id == g.user.id).execute()


def refuse(field, message):
    abort(422, errors={"json": {field: [message]}})


def get_list_id(list_id):
    """The id of the user's live list `list_id`, or of the inbox for None; else a 422."""
    lists = TaskList.of(g.user.id).select(TaskList.id)
    found = lists.where(TaskList.is_inbox if list_id is None else TaskList.id == list_id).scalar()
    if found is None:
        refuse("list_id", NO_LIST)
    return found


def get_parent(parent_id, list_id=None):
    """The user's live task `parent_id` (in list `list_id`, if given), with room below it."""
    query = Task.of(g.user.id).where(Task.id == parent_id)
    parent = query.where(Task.task_list == list_id).first() if list_id else query.first()
    if parent is None:
        refuse("parent_id", NO_TASK)
    if depth(parent.path) >= MAX_DEPTH:
        refuse("parent_id", TOO_DEEP)
    return parent


def below(path):
    """The tasks of a subtree, `path`'s own task excepted ("" : a whole list)."""
    return [Task.path > path, Task.path < subtree_end(path)] if path else []


def subtree(task):
    live = [Task.task_list == task.list_id, Task.deleted_at.is_null()]
    return [*live, Task.path >= task.path, Task.path < subtree_end(task.path)]


def place_new_task(list_id, parent_id):
    """Where a new task goes: last among its siblings, in list `list_id` (the inbox for None,
    the parent's list when only a parent is given). After lock_user()."""
    parent = get_parent(parent_id, list_id) if parent_id is not None else None
    list_id = parent.list_id if parent else get_list_id(list_id)
    parent_path = parent.path if parent else ""
    last = (
        Task.select(fn.MAX(Task.path))
        .where(Task.task_list == list_id, Task.deleted_at.is_null(), *below(parent_path))
        .scalar()
    )
    level = depth(parent_path) + 1
    position = between(position_at(last, level) if last else None, None)
    path = child_path(parent_path, position)
    return {"task_list": list_id, "parent": parent_id, "position": position, "path": path}


def move_task(task, fields):
    """Move `task` with its subtasks into a list (the parent's, or else its own, by default),
    under a parent (none by default), right after the sibling `previous_id` (first by
    default). After lock_user()."""
    list_id = get_list_id(fields["list_id"]) if "list_id" in fields else None
    parent = get_new_parent(task, fields.get("parent_id"), list_id)
    list_id = list_id or (parent.list_id if parent else task.list_id)
    parent_path = parent.path if parent else ""
    group = [Task.task_list == list_id, Task.deleted_at.is_null(), Task.id != task.id]
    group.append(Task.parent == parent.id if parent else Task.parent.is_null())
    previous = get_previous(fields.get("previous_id"), group)
    after = Task.path >= subtree_end(previous.path) if previous else Task.path > parent_path
    following = Task.select().where(*group, after).order_by(Task.path).first()
    position = between(previous and previous.position, following and following.position)
    if position is None:  # no room left between the two: the siblings are laid out afresh
        return spread_and_move(task, list_id, parent, group, previous)
    new_path = child_path(parent_path, position)
    rest_of_path = fn.SUBSTR(Task.path, len(task.path) + 1)
    moved = {"task_list": list_id, "path": Value(new_path).concat(rest_of_path)}
    Task.update(**moved, updated_at=utcnow()).where(*subtree(task)).execute()
    return set_place(task, parent, position)


def get_new_parent(task, parent_id, list_id):
    if parent_id is None:
        return None
    parent = get_parent(parent_id, list_id)
    if parent.list_id == task.list_id and parent.path.startswith(task.path):
        refuse("parent_id", "A task cannot go under itself or one of its subtasks.")
    levels = fn.LENGTH(Task.path) - fn.LENGTH(fn.REPLACE(Task.path, ".", ""))
    deepest = Task.select(fn.MAX(levels)).where(*subtree(task)).scalar()
    if depth(parent.path) + 1 + deepest - depth(task.path) > MAX_DEPTH:
        refuse("parent_id", TOO_DEEP)
    return parent


def get_previous(previous_id, group):
    if previous_id is None:
        return None
    previous = Task.select().where(*group, Task.id == previous_id).first()
    if previous is None:
        refuse("previous_id", "No such task among the task's new siblings.")
    return previous


def set_place(task, parent, position):
    place = {"parent": parent.id if parent else None, "position": position}
    return Task.update(**place).where(Task.id == task.id).returning(Task).execute()[0]


def spread_and_move(task, list_id, parent, group, previous):
    """Give every sibling a short position again, the task included (rare: it takes some two
    hundred moves to one place). Every row below them is rewritten by id, from paths read
    before the first write, so no half-rewritten subtree is mistaken for another."""
    parent_path = parent.path if parent else ""
    siblings = list(Task.select().where(*group).order_by(Task.path, Task.id))
    gap = siblings.index(previous) + 1 if previous else 0
    positions = spread(len(siblings) + 1)
    others = zip(siblings, positions[:gap] + positions[gap + 1 :], strict=True)
    new_paths = {sibling.path: child_path(parent_path, position) for sibling, position in others}
    new_rows = {}
    for row in Task.select(Task.id, Task.path).where(*group[:2], *below(parent_path)):
        old = ancestor_path(row.path, depth(parent_path) + 1)
        new_rows[row.id] = new_paths.get(old, old) + row.path[len(old) :]
    task_path = child_path(parent_path, positions[gap])
    for row in Task.select(Task.id, Task.path).where(*subtree(task)):
        new_rows[row.id] = task_path + row.path[len(task.path) :]
    now = utcnow()
    for row_id, path in new_rows.items():
        changes = {"path": path, "position": position_at(path, depth(path)), "updated_at": now}
        Task.update(**changes, task_list=list_id).where(Task.id == row_id).execute()
    return set_place(task, parent, positions[gap])


def last_list_position():
    """A position after the user's last list. After lock_user()."""
    last = TaskList.of(g.user.id).select(fn.MAX(TaskList.position)).scalar()
    return between(last, None)


def move_list(task_list, previous_id):
    """Put a list right after the list `previous_id` (first for None). After lock_user()."""
    others = TaskList.of(g.user.id).where(TaskList.id != task_list.id)
    previous = None
    if previous_id is not None:
        previous = others.where(TaskList.id == previous_id).first()
        if previous is None:
            refuse("previous_id", NO_LIST)
    following = others.where(TaskList.position > previous.position) if previous else others
    following = following.order_by(TaskList.position, TaskList.id).first()
    position = between(previous and previous.position, following and following.position)
    if position is None:  # no room between the two: every list gets a short position again
        ordered = list(others.order_by(TaskList.position, TaskList.id))
        ordered.insert(ordered.index(previous) + 1 if previous else 0, task_list)
        for each, new_position in zip(ordered, spread(len(ordered)), strict=True):
            set_list_position(each, new_position)
            position = new_position if each is task_list else position
    return set_list_position(task_list, position)


def set_list_position(task_list, position):
    query = TaskList.update(position=position, updated_at=utcnow())
    return query.where(TaskList.id == task_list.id).returning(TaskList).execute()[0]
