"""Positions: the strings that order siblings (a user's lists, a parent's tasks).

They compare as plain strings, byte by byte, and a new one always fits between any two
(fractional indexing), so a move writes the moved item and never its siblings. A task also
has a path, its ancestors' positions and its own, each followed by SEPARATOR: ordering a
list's tasks by path shows them depth first, each followed by its subtasks."""

from fractional_indexing import FIError, generate_key_between, generate_n_keys_between

SEPARATOR = "."  # before every digit of a position: a path sorts before its subtasks' paths
# Past this, a group's positions are spread out again: inserting at one place over and over
# lengthens the new positions by a character every six times or so.
MAX_LENGTH = 40
SHORT = 10  # what a group laid out afresh gets (see spread)


def between(before, after):
    """A position after `before` and before `after` (None: the start or the end of the group),
    or None when there is none worth having: equal neighbours, or one grown too long."""
    try:
        position = generate_key_between(before, after)
    except FIError:
        return None
    return position if len(position) <= MAX_LENGTH else None


def spread(count, before=None, after=None):
    """`count` positions in order between `before` and `after` (None: the start or the end),
    as short as fit: for siblings laid out afresh."""
    return generate_n_keys_between(before, after, count)


def child_path(parent_path, position):
    return f"{parent_path}{position}{SEPARATOR}"


def depth(path):
    """1 for a top-level task, 2 for its subtasks, ...; 0 for the empty path of a list's top."""
    return path.count(SEPARATOR)


def position_at(path, level):
    """The position, in `path`, of the ancestor (or the task itself) at depth `level`."""
    return path.split(SEPARATOR)[level - 1]


def subtree_end(path):
    """The first string after every path that starts with `path`: a task's subtree is the
    range path <= p < subtree_end(path)."""
    return path[:-1] + chr(ord(SEPARATOR) + 1)
