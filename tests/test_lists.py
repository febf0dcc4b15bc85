"""The task list's filters, sorting and incremental sync, through HTTP on both databases."""

import json
import time
from datetime import timedelta

import pytest
from marshmallow import Schema

from taskapi.models import Task, utcnow
from taskapi.schemas import TaskSchema

from .conftest import inbox_rows


@pytest.fixture
def alice(auth):
    return auth.signup("alice@example.com")


def titles(client, user, query=""):
    response = client.get(f"{user.tasks_url}?{query}", headers=user.headers)
    assert response.status_code == 200, response.json
    return [task["title"] for task in response.json]


def test_filter_by_completion(client, auth, alice):
    auth.create_task(alice, title="open")
    auth.create_task(alice, title="done", completed=True)
    assert titles(client, alice, "completed=true") == ["done"]
    assert titles(client, alice, "completed=false") == ["open"]


def test_filter_by_priority(client, auth, alice):
    for priority in ("high", "low", "high"):
        auth.create_task(alice, title=priority, priority=priority)
    assert titles(client, alice, "priority=high") == ["high", "high"]
    assert titles(client, alice, "priority=none") == []


def test_filter_by_tags_needs_all_of_them(client, auth, alice):
    auth.create_task(alice, title="both", tags=["work", "urgent"])
    auth.create_task(alice, title="work only", tags=["work"])
    auth.create_task(alice, title="none")
    assert titles(client, alice, "tag=work") == ["work only", "both"]
    assert titles(client, alice, "tag=work&tag=urgent") == ["both"]
    assert titles(client, alice, "tag=work&tag=work") == ["work only", "both"]
    assert titles(client, alice, "tag=home") == []


@pytest.mark.parametrize(
    "query",
    [
        "",
        "completed=true",
        "priority=high",
        "tag=shared",
        "q=bob",
        "due_before=2100-01-01T00:00:00Z",
        "updated_since=2000-01-01T00:00:00Z",
        "include_deleted=true",
        "sort=title",
    ],
)
def test_no_list_shows_other_users_tasks(client, auth, alice, query):
    bob = auth.signup("bob@example.com")
    fields = {
        "completed": True,
        "priority": "high",
        "tags": ["shared"],
        "due_at": "2099-01-01T00:00:00Z",
    }
    auth.create_task(bob, title="bob's", **fields)
    gone = auth.create_task(bob, title="bob's deleted", **fields)
    client.delete(f"{bob.tasks_url}/{gone['id']}", headers=bob.headers)
    assert titles(client, alice, query) == []
    assert total(client, alice, query) == 0


def test_tags_of_other_users_do_not_match(client, auth, alice):
    bob = auth.signup("bob@example.com")
    auth.create_task(bob, title="bob's", tags=["shared"])
    assert titles(client, alice, "tag=shared") == []


def test_filter_by_due_dates(client, auth, alice):
    auth.create_task(alice, title="early", due_at="2026-12-01T09:00:00+00:00")
    auth.create_task(alice, title="late", due_at="2026-12-20T09:00:00+01:00")
    auth.create_task(alice, title="someday")
    assert titles(client, alice, "due_before=2026-12-10T00:00:00%2B00:00") == ["early"]
    assert titles(client, alice, "due_after=2026-12-10T00:00:00Z") == ["late"]


def test_search_is_case_insensitive_in_title_and_description(client, auth, alice):
    auth.create_task(alice, title="Buy MILK")
    auth.create_task(alice, title="call", description="about the milkman")
    auth.create_task(alice, title="other")
    assert titles(client, alice, "q=milk") == ["call", "Buy MILK"]


def test_search_treats_wildcards_literally(client, auth, alice):
    auth.create_task(alice, title="100% done")
    auth.create_task(alice, title="1000 done")
    assert titles(client, alice, "q=0%25") == ["100% done"]
    assert titles(client, alice, "q=_") == []


def test_search_treats_backslashes_literally_and_matches_any_letters(client, auth, alice):
    auth.create_task(alice, title="C:\\temp\\new")
    auth.create_task(alice, title="ctemp")
    auth.create_task(alice, title="Grüße aus Köln", description="naïve café")
    assert titles(client, alice, "q=%5Ctemp") == ["C:\\temp\\new"]
    assert titles(client, alice, "q=%C3%9FE AUS k") == ["Grüße aus Köln"]
    assert titles(client, alice, "q=caf%C3%A9") == ["Grüße aus Köln"]


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("-created_at", ["c", "b", "a"]),
        ("created_at", ["a", "b", "c"]),
        ("title", ["a", "b", "c"]),
        ("-title", ["c", "b", "a"]),
        ("-priority", ["b", "c", "a"]),
        ("priority", ["a", "c", "b"]),
        ("due_at", ["c", "a", "b"]),  # no due date last
        ("-due_at", ["a", "c", "b"]),
    ],
)
def test_sort(client, auth, alice, sort, expected):
    auth.create_task(alice, title="a", priority="low", due_at="2026-12-05T00:00:00+00:00")
    auth.create_task(alice, title="b", priority="high")
    auth.create_task(alice, title="c", priority="medium", due_at="2026-12-01T00:00:00+00:00")
    assert titles(client, alice, f"sort={sort}") == expected


def test_sort_by_updated_at(client, auth, alice):
    first = auth.create_task(alice, title="first")
    auth.create_task(alice, title="second")
    client.patch(
        f"{alice.tasks_url}/{first['id']}", json={"completed": True}, headers=alice.headers
    )
    assert titles(client, alice, "sort=-updated_at") == ["first", "second"]


def test_filters_combine_with_pagination(client, auth, alice):
    for number in range(5):
        auth.create_task(alice, title=f"t{number}", tags=["x"] if number % 2 else [])
    response = client.get(f"{alice.tasks_url}?tag=x&page_size=1&page=2", headers=alice.headers)
    assert [task["title"] for task in response.json] == ["t1"]
    assert json.loads(response.headers["X-Pagination"])["total"] == 2


@pytest.mark.parametrize(
    "query",
    [
        "color=red",
        "completed=yes",
        "completed=1",
        "priority=urgent",
        "due_before=tomorrow",
        "due_after=2026-12-01T00:00:00",  # no offset
        "updated_since=0",
        "sort=size",
        "sort=--title",
        "include_deleted=maybe",
        "q=",
        "tag=" + "x" * 51,
        "tag=%20%20",
        "tag=%20" + "x" * 50,
    ],
)
def test_unknown_or_malformed_parameters_are_422(client, alice, query):
    response = client.get(f"{alice.tasks_url}?{query}", headers=alice.headers)
    assert response.status_code == 422
    assert "query" in response.json["errors"]


def test_updated_since_returns_only_later_changes(client, auth, alice):
    old = auth.create_task(alice, title="old")
    time.sleep(0.01)
    since = client.get(f"{alice.tasks_url}/{old['id']}", headers=alice.headers).json["updated_at"]
    auth.create_task(alice, title="new")
    client.patch(
        f"{alice.tasks_url}/{old['id']}", json={"title": "old, edited"}, headers=alice.headers
    )
    query = f"updated_since={since.replace('+', '%2B')}&sort=updated_at"
    assert titles(client, alice, query) == ["new", "old, edited"]


def test_deleted_tasks_are_tombstones_for_syncing_clients(client, auth, alice):
    kept, gone = auth.create_task(alice, title="kept"), auth.create_task(alice, title="gone")
    since = gone["updated_at"].replace("+", "%2B")
    client.delete(f"{alice.tasks_url}/{gone['id']}", headers=alice.headers)
    assert titles(client, alice) == ["kept"]
    response = client.get(f"{alice.tasks_url}?include_deleted=true", headers=alice.headers)
    tombstone = next(task for task in response.json if task["id"] == gone["id"])
    assert tombstone["deleted_at"] is not None
    assert tombstone["updated_at"] == tombstone["deleted_at"]
    synced = client.get(
        f"{alice.tasks_url}?include_deleted=true&updated_since={since}", headers=alice.headers
    )
    assert [task["id"] for task in synced.json] == [gone["id"]]
    assert next(t for t in response.json if t["id"] == kept["id"])["deleted_at"] is None


def test_tombstones_expire_after_the_retention(make_app, auth):
    app = make_app(TOMBSTONE_RETENTION_DAYS="1")
    client = app.test_client()
    alice = type(auth)(client).signup("retention@x.io")
    old = type(auth)(client).create_task(alice, title="old")
    client.delete(f"{alice.tasks_url}/{old['id']}", headers=alice.headers)
    with app.app_context():
        Task.update(deleted_at=utcnow() - timedelta(days=2)).where(Task.id == old["id"]).execute()
    response = client.get(f"{alice.tasks_url}?include_deleted=true", headers=alice.headers)
    assert response.json == []  # past retention: not listed, even before it is purged
    newer = type(auth)(client).create_task(alice, title="newer")
    client.delete(f"{alice.tasks_url}/{newer['id']}", headers=alice.headers)  # purges the old
    with app.app_context():
        assert Task.get_or_none(Task.id == old["id"]) is None
        assert Task.get_by_id(newer["id"]).deleted_at is not None


def total(client, user, query=""):
    response = client.get(f"{user.tasks_url}?{query}", headers=user.headers)
    return json.loads(response.headers["X-Pagination"])["total"]


def test_the_plain_lists_total_follows_every_change(client, auth, app, alice):
    ids = [auth.create_task(alice, completed=number < 2)["id"] for number in range(5)]
    assert total(client, alice) == 5
    client.delete(f"{alice.tasks_url}/{ids[4]}", headers=alice.headers)
    assert total(client, alice) == 4
    client.delete(f"{alice.tasks_url}?completed=true", headers=alice.headers)
    assert total(client, alice) == 2
    with app.app_context():
        Task.update(deleted_at=None).where(Task.id == ids[4]).execute()  # a tombstone revived
        Task.delete().where(Task.deleted_at.is_null(False)).execute()  # the others purged
    assert total(client, alice) == 3
    counted = total(client, alice, "completed=false") + total(client, alice, "completed=true")
    assert counted == total(client, alice) == len(titles(client, alice))


def test_totals_are_per_user(client, auth, alice):
    bob = auth.signup("bob@example.com")
    auth.create_task(bob)
    assert (total(client, alice), total(client, bob)) == (0, 1)


def test_totals_follow_statements_of_many_rows(client, app, alice):
    with app.app_context():
        Task.insert_many(inbox_rows(alice.id, 2000)).execute()  # one statement, one count update
    assert total(client, alice) == 2000
    with app.app_context():
        ids = [task.id for task in Task.select(Task.id).limit(500)]
    response = client.patch(
        alice.tasks_url, json={"ids": ids, "completed": True}, headers=alice.headers
    )
    assert response.status_code == 200
    assert client.delete(f"{alice.tasks_url}?completed=true", headers=alice.headers).json == {
        "deleted": 500
    }
    assert total(client, alice) == 1500


def test_responses_are_what_marshmallow_itself_dumps(client, app, auth, alice):
    """TaskSchema.dump skips marshmallow's per-field calls: every route's JSON must still be
    exactly Schema.dump's, for every kind of value (nulls, times, tags, unicode, tombstones)."""
    auth.create_task(alice, title="plain")
    auth.create_task(
        alice,
        title="ünïcode ✓ 任务",
        description="line\nbreak",
        completed=True,
        priority="high",
        due_at="2030-01-02T03:04:05.123456+05:30",
        tags=["work", "☕"],
    )
    created = auth.create_task(alice, title="gone", tags=["x"])
    got = client.get(f"{alice.tasks_url}/{created['id']}", headers=alice.headers)
    deleted = client.delete(
        f"{alice.tasks_url}/{created['id']}",
        headers={**alice.headers, "If-Match": got.headers["ETag"]},
    )
    assert deleted.status_code == 204
    listed = client.get(f"{alice.tasks_url}?include_deleted=true", headers=alice.headers).json
    with app.app_context():
        stored = list(Task.select().order_by(Task.created_at.desc(), Task.id.desc()))
        expected = Schema.dump(TaskSchema(many=True), stored)
    assert listed == expected
    assert client.get(alice.tasks_url, headers=alice.headers).json == expected[1:]  # live ones
    assert {task["title"] for task in listed} == {"plain", "ünïcode ✓ 任务", "gone"}
    assert [task["deleted_at"] is not None for task in listed] == [True, False, False]
    for task in expected[1:]:
        one = client.get(f"{alice.tasks_url}/{task['id']}", headers=alice.headers)
        assert one.json == task
    patched = client.patch(f"{alice.tasks_url}/{expected[2]['id']}", json={}, headers=alice.headers)
    with app.app_context():
        model = Task.get_by_id(expected[2]["id"])
        assert patched.json == Schema.dump(TaskSchema(), model)
        assert TaskSchema().dump(model) == Schema.dump(TaskSchema(), model)
