"""Keyset pagination of the task list (`after`, next_cursor), through HTTP on both databases."""

import json
from datetime import UTC, datetime
from random import Random

import pytest

from taskapi.models import Task
from taskapi.schemas import SORTABLE

SORTS = [direction + name for name in SORTABLE for direction in ("", "-")]
TIMES = [datetime(2026, 3, day, 9, tzinfo=UTC) for day in (1, 2, 3)]


@pytest.fixture
def alice(auth):
    return auth.signup("alice@example.com")


@pytest.fixture
def tied(client, auth, app, alice):
    """25 tasks from a fixed seed, ties on every sort key: three titles, times and
    priorities; due dates, all-day ones and none (NULL); subtasks. Returns the inbox id."""
    random = Random(14)
    parents = []
    for _ in range(25):
        fields = {"title": random.choice(["apple", "Banana", "cherry"])}
        fields["priority"] = random.choice(["none", "low", "high"])
        due = random.choice(["none", "at", "date"])
        if due == "at":
            fields["due_at"] = random.choice(TIMES).isoformat()
        if due == "date":
            fields["due_date"] = "2026-03-02"
        if parents and random.random() < 0.3:
            fields["parent_id"] = random.choice(parents)
        parents.append(auth.create_task(alice, **fields)["id"])
    with app.app_context():  # ties in created_at and updated_at too
        for task_id in parents:
            moment = random.choice(TIMES)
            Task.update(created_at=moment, updated_at=moment).where(Task.id == task_id).execute()
    return client.get(alice.lists_url, headers=alice.headers).json[0]["id"]


def get_page(client, user, query):
    response = client.get(f"{user.tasks_url}?{query}", headers=user.headers)
    assert response.status_code == 200, response.json
    return [task["id"] for task in response.json], json.loads(response.headers["X-Pagination"])


def walk_by_cursor(client, user, query, size=4):
    ids, pagination = get_page(client, user, f"{query}&page_size={size}")
    while "next_cursor" in pagination:
        page, pagination = get_page(
            client, user, f"{query}&page_size={size}&after={pagination['next_cursor']}"
        )
        assert page, "a next_cursor leads to a page with tasks"
        ids += page
    return ids


def walk_by_page(client, user, query, size=4):
    ids, number = [], 1
    while page := get_page(client, user, f"{query}&page_size={size}&page={number}")[0]:
        ids, number = ids + page, number + 1
    return ids


@pytest.mark.parametrize("sort", SORTS)
def test_cursor_walk_is_the_offset_walk(client, alice, tied, sort):
    query = f"sort={sort}&list_id={tied}"
    by_cursor = walk_by_cursor(client, alice, query)
    assert by_cursor == walk_by_page(client, alice, query)
    assert len(by_cursor) == len(set(by_cursor)) == 25


@pytest.mark.parametrize(
    "query", ["sort=-created_at", "q=an", "completed=false&priority=high", "include_deleted=true"]
)
def test_cursor_walk_keeps_the_filters_and_the_total(client, alice, tied, query):
    by_cursor = walk_by_cursor(client, alice, query, size=2)
    assert by_cursor == walk_by_page(client, alice, query, size=2)
    first = get_page(client, alice, f"{query}&page_size=2")[1]
    after = get_page(client, alice, f"{query}&page_size=2&after={first['next_cursor']}")[1]
    assert after["total"] == first["total"] == len(by_cursor)


def test_page_by_cursor_has_no_page_number(client, auth, alice):
    for number in range(3):
        auth.create_task(alice, title=f"task {number}")
    first = get_page(client, alice, "page_size=2")[1]
    ids, second = get_page(client, alice, f"page_size=2&after={first['next_cursor']}")
    assert len(ids) == 1
    assert second == {"total": 3, "total_pages": 2, "first_page": 1, "last_page": 2}
    assert first["page"] == 1  # numbered pages keep their numbers


def test_last_page_has_no_next_cursor(client, auth, alice):
    auth.create_task(alice)
    assert "next_cursor" not in get_page(client, alice, "page_size=1")[1]


def test_cursor_continues_after_its_task_is_deleted(client, auth, alice):
    ids = [auth.create_task(alice, title=f"task {number}")["id"] for number in range(4)]
    cursor = get_page(client, alice, "page_size=2")[1]["next_cursor"]
    client.delete(f"{alice.tasks_url}/{ids[2]}", headers=alice.headers)
    assert get_page(client, alice, f"page_size=2&after={cursor}")[0] == [ids[1], ids[0]]


def create_two(auth, user):
    for title in ("one", "two"):
        auth.create_task(user, title=f"{user.email}: {title}")


def get_cursor(client, user, query=""):
    return get_page(client, user, f"page_size=1&{query}")[1]["next_cursor"]


@pytest.mark.parametrize(
    "spoil",
    [
        # The last character may differ in padding bits only: the first is the payload's.
        lambda cursor: ("A" if cursor[0] != "A" else "B") + cursor[1:],  # forged
        lambda cursor: cursor[: len(cursor) // 2],  # cut short
        lambda cursor: "not a cursor",
        lambda cursor: "W10.abc",  # signed by someone else
        lambda cursor: "%00%ff",
    ],
    ids=["forged", "cut", "text", "foreign", "bytes"],
)
def test_spoilt_cursor_is_422(client, auth, alice, spoil):
    create_two(auth, alice)
    cursor = spoil(get_cursor(client, alice))
    response = client.get(f"{alice.tasks_url}?after={cursor}", headers=alice.headers)
    assert response.status_code == 422
    assert response.json["errors"]["query"]["after"]
    assert response.json["message"] == response.json["detail"] == "Invalid request."


def test_cursor_of_another_sort_is_422(client, auth, alice):
    create_two(auth, alice)
    cursor = get_cursor(client, alice, "sort=title")
    response = client.get(f"{alice.tasks_url}?after={cursor}", headers=alice.headers)
    assert response.status_code == 422
    assert response.json["errors"]["query"]["after"] == [
        "This cursor belongs to sort=title, not sort=-created_at."
    ]


def test_cursor_of_another_user_is_422(client, auth, alice):
    bob = auth.signup("bob@example.com")
    create_two(auth, bob)
    cursor = get_cursor(client, bob)
    response = client.get(f"{alice.tasks_url}?after={cursor}", headers=alice.headers)
    assert response.status_code == 422
    assert "bob" not in response.text


def test_cursor_reaches_only_own_tasks(client, auth, alice):
    bob = auth.signup("bob@example.com")
    for owner in (alice, bob, alice, bob):
        auth.create_task(owner, title=owner.email)
    walked = walk_by_cursor(client, alice, "sort=title", size=1)
    assert len(walked) == 2
    titles = {task["title"] for task in client.get(alice.tasks_url, headers=alice.headers).json}
    assert titles == {"alice@example.com"}


def test_after_with_page_is_422(client, auth, alice):
    create_two(auth, alice)
    cursor = get_cursor(client, alice)
    response = client.get(f"{alice.tasks_url}?after={cursor}&page=2", headers=alice.headers)
    assert response.status_code == 422
    assert response.json["errors"]["query"]["after"] == ["Send after or page, not both."]


def test_openapi_documents_after_and_next_cursor(client):
    spec = client.get("/openapi.json").json
    parameters = spec["paths"]["/api/users/{user_id}/tasks"]["get"]["parameters"]
    assert "after" in {parameter["name"] for parameter in parameters}
    assert "next_cursor" in spec["components"]["schemas"]["Page"]["properties"]
