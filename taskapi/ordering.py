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
    SEPARATOR,
    SHORT,
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
    SQLite's write lock first, which SQLite needs to wait its turn rather than fail. Read what
    the lock guards in later statements: on PostgreSQL a statement sees the database as it was
    when the statement began, before it waited for the lock. Returns the user's count of live
    tasks, as the lock holds it."""
    query = User.update(task_count=User.task_count).where(User.id == g.user.id)
    locked = query.returning(User.task_count).tuples().execute()
    return locked[0][0] if locked else 0


def refuse(field, message):
    abort(422, errors={"json": {field: [message]}})


def find_list(list_id):
    """The user's live list `list_id` (the inbox for None) as its id and the largest path in
    it (None if empty), in one query; else a 422."""
    live = [Task.task_list == TaskList.id, Task.deleted_at.is_null()]
    lists = TaskList.of(g.user.id).select(TaskList.id, Task.select(fn.MAX(Task.path)).where(*live))
    found = lists.where(TaskList.is_inbox if list_id is None else TaskList.id == list_id)
    found = found.tuples().first()
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


def subtree(list_id, path):
    """The live tasks of the subtree at `path` in a list, its own task included."""
    live = [Task.task_list == list_id, Task.deleted_at.is_null()]
    return [*live, Task.path >= path, Task.path < subtree_end(path)]


def place_new_task(list_id, parent_id):
    """Where a new task goes: last among its siblings, in list `list_id` (the inbox for None,
    the parent's list when only a parent is given). After lock_user()."""
    if parent_id is None:
        (list_id, last), parent_path = find_list(list_id), ""
    else:
        parent = get_parent(parent_id, list_id)
        list_id, parent_path = parent.list_id, parent.path
        live = [Task.task_list == list_id, Task.deleted_at.is_null()]
        last = Task.select(fn.MAX(Task.path)).where(*live, *below(parent_path)).scalar()
    level = depth(parent_path) + 1
    position = between(position_at(last, level) if last else None, None)
    path = child_path(parent_path, position)
    return {"task_list": list_id, "parent": parent_id, "position": position, "path": path}


def move_task(task, fields):
    """Move `task` with its subtasks into a list (the parent's, or else its own, by default),
    under a parent (none by default), right after the sibling `previous_id` (first by
    default). After lock_user()."""
    list_id = find_list(fields["list_id"])[0] if "list_id" in fields else None
    parent = get_new_parent(task, fields.get("parent_id"), list_id)
    list_id = list_id or (parent.list_id if parent else task.list_id)
    parent_path = parent.path if parent else ""
    group = [Task.task_list == list_id, Task.deleted_at.is_null(), Task.id != task.id]
    group.append(Task.parent == parent.id if parent else Task.parent.is_null())
    previous = get_previous(fields.get("previous_id"), group)
    after = Task.path >= subtree_end(previous.path) if previous else Task.path > parent_path
    following = Task.select().where(*group, after).order_by(Task.path).first()
    position = between(previous and previous.position, following and following.position)
    if position is None:  # no room left between the two
        position = make_room(task, list_id, parent_path, group, previous)
    repath(task.list_id, task.path, list_id, child_path(parent_path, position))
    return set_place(task, parent, position)


def repath(old_list, old_path, new_list, new_path):
    """Move the live subtree at `old_path` to `new_path`, in one statement."""
    rest_of_path = fn.SUBSTR(Task.path, len(old_path) + 1)
    moved = {"task_list": new_list, "path": Value(new_path).concat(rest_of_path)}
    Task.update(**moved, updated_at=utcnow()).where(*subtree(old_list, old_path)).execute()


def get_new_parent(task, parent_id, list_id):
    if parent_id is None:
        return None
    parent = get_parent(parent_id, list_id)
    if parent.list_id == task.list_id and parent.path.startswith(task.path):
        refuse("parent_id", "A task cannot go under itself or one of its subtasks.")
    levels = fn.LENGTH(Task.path) - fn.LENGTH(fn.REPLACE(Task.path, SEPARATOR, ""))
    deepest = Task.select(fn.MAX(levels)).where(*subtree(task.list_id, task.path)).scalar()
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


def make_room(task, list_id, parent_path, group, previous):
    """Give the siblings around the gap after `previous` short positions again, and return
    the gap's position (rare: it takes some two hundred moves to one place). Each sibling takes
    its subtree along in one statement, by way of a parking place no real path can be in ("~"
    sorts after every digit); the task is parked first, as its old path may be given away."""
    parked = task.path[: -len(task.position) - 1] + "~" + SEPARATOR
    repath(task.list_id, task.path, task.list_id, parked)
    task.path = parked
    window, positions, gap = find_window(group, previous)
    others = zip(window, positions[:gap] + positions[gap + 1 :], strict=True)
    changed = [(sibling, position) for sibling, position in others if sibling.position != position]
    for number, (sibling, _) in enumerate(changed):
        repath(list_id, sibling.path, list_id, child_path(parent_path, f"~{number}"))
    for number, (sibling, position) in enumerate(changed):
        new_path = child_path(parent_path, position)
        repath(list_id, child_path(parent_path, f"~{number}"), list_id, new_path)
        Task.update(position=position).where(Task.id == sibling.id).execute()
    return positions[gap]


def find_window(group, previous):
    """The fewest siblings around the gap after `previous` between whose outer neighbours short
    positions fit; returns them, the positions (the gap's among them) and the gap's index."""
    query = Task.select(Task.id, Task.position, Task.path).where(*group).order_by(Task.path)
    siblings = list(query)
    gap = siblings.index(previous) + 1 if previous else 0
    for start, end in get_windows(gap, len(siblings)):
        before = siblings[start - 1].position if start else None
        after = siblings[end].position if end < len(siblings) else None
        positions = spread(end - start + 1, before, after)
        if max(map(len, positions)) <= SHORT or (start, end) == (0, len(siblings)):
            return siblings[start:end], positions, gap - start


def get_windows(gap, count):
    """Ranges of siblings to lay out afresh, smallest first: after the gap (so `previous`, the
    sibling a move names, keeps its place), before it, then both; at last, all of them."""
    width = 1
    while True:
        yield gap, min(gap + width, count)
        yield max(gap - width, 0), gap
        yield max(gap - width, 0), min(gap + width, count)
        if width >= count:
            return
        width *= 2


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
