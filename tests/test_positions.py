"""The position arithmetic on its own: no app, no database. Random sequences use fixed seeds."""

import random

import pytest

from taskapi.positions import (
    MAX_LENGTH,
    between,
    child_path,
    depth,
    position_at,
    spread,
    subtree_end,
)


def test_between_orders_as_plain_strings():
    first = between(None, None)
    after = between(first, None)
    before = between(None, first)
    middle = between(first, after)
    assert before < first < middle < after
    assert all(key.isascii() and key.isalnum() for key in (before, first, middle, after))


@pytest.mark.parametrize("seed", range(5))
def test_random_inserts_keep_a_total_order(seed):
    """Insert 500 times at random places, as drags do: every new position lands exactly where
    it was put, and the sorted positions are the order the inserts built."""
    rng = random.Random(seed)
    order = []
    for _ in range(500):
        index = rng.randint(0, len(order))
        before = order[index - 1] if index else None
        after = order[index] if index < len(order) else None
        position = between(before, after)
        if position is None:  # too long here: the caller lays the group out afresh
            order[index:index] = ["new"]
            order = spread(len(order))
            continue
        order.insert(index, position)
        assert sorted(order) == order
    assert len(set(order)) == len(order)


def test_appending_keeps_positions_short():
    """Adding at the end is what every new task does: ten thousand stay at 4 characters."""
    position = None
    for _ in range(10_000):
        position = between(position, None)
    assert len(position) <= 4


def test_inserting_at_one_place_runs_out_and_asks_for_a_spread():
    low, high = between(None, None), None
    high = between(low, None)
    for _ in range(1000):
        middle = between(low, high)
        if middle is None:
            break
        assert low < middle < high
        high = middle
    else:
        pytest.fail("positions grew without bound")
    assert len(high) <= MAX_LENGTH


def test_no_position_between_equal_or_reversed_neighbours():
    assert between("a1", "a1") is None
    assert between("a2", "a1") is None


def test_spread_gives_short_ordered_positions():
    positions = spread(5000)
    assert positions == sorted(positions)
    assert len(set(positions)) == 5000
    assert max(map(len, positions)) <= 4


def test_migrated_positions_are_valid_and_in_order():
    """migrations/0007 numbers existing tasks h00000000, h00000001, ...: valid positions, and
    a new task goes after them."""
    migrated = [f"h{n:08d}" for n in (0, 1, 9, 10, 12345678)]
    assert migrated == sorted(migrated)
    assert between(migrated[-1], None) > migrated[-1]
    assert migrated[0] < between(migrated[0], migrated[1]) < migrated[1]


def test_paths_sort_depth_first():
    """A parent, then its subtasks (and theirs), then its next sibling; also when one
    sibling's position starts with another's ("a0" and "a0V")."""
    a0, a0v, a1 = "a0", "a0V", "a1"
    parent = child_path("", a0)
    child = child_path(parent, "a0")
    grandchild = child_path(child, "Zz")
    tasks = [child_path("", a1), grandchild, child_path("", a0v), parent, child]
    assert sorted(tasks) == [parent, child, grandchild, child_path("", a0v), child_path("", a1)]


def test_depth_and_position_at():
    path = child_path(child_path(child_path("", "a0"), "b12"), "Zz")
    assert depth("") == 0
    assert depth(path) == 3
    assert [position_at(path, level) for level in (1, 2, 3)] == ["a0", "b12", "Zz"]


def test_subtree_end_bounds_exactly_the_subtree():
    parent = child_path("", "a0")
    inside = [parent, child_path(parent, "a0"), child_path(child_path(parent, "zz"), "zz")]
    outside = [child_path("", "a0V"), child_path("", "a1"), child_path("", "Zz")]
    assert all(parent <= path < subtree_end(parent) for path in inside)
    assert not any(parent <= path < subtree_end(parent) for path in outside)
