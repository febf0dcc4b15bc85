import json
import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import requests

from taskapi.models import IdempotencyKey, Task, TaskTag, utcnow


def stored_task(app, task_id):
    with app.app_context():
        return Task.get_or_none(Task.id == task_id)


def stored_tasks(app):
    """Every row of tasks, tombstones too, as the database has them."""
    with app.app_context():
        return list(Task.select().order_by(Task.id).dicts())


def test_create_task_returns_201_with_location(client, auth, app):
    alice = auth.signup()
    response = client.post(alice.tasks_url, json={"title": "  Buy milk  "}, headers=alice.headers)
    assert response.status_code == 201
    task = response.json
    assert task["title"] == "Buy milk"
    assert task["description"] is None
    assert task["completed"] is False
    assert task["user_id"] == alice.id
    assert task["created_at"].endswith("+00:00")
    assert response.headers["Location"].endswith(f"{alice.tasks_url}/{task['id']}")
    assert client.get(response.headers["Location"], headers=alice.headers).json == task
    assert stored_task(app, task["id"]).title == "Buy milk"


def test_create_task_with_all_fields(client, auth):
    alice = auth.signup()
    body = {"title": "Write", "description": "the report", "completed": True}
    task = client.post(alice.tasks_url, json=body, headers=alice.headers).json
    assert {key: task[key] for key in body} == body


def test_unicode_round_trips(client, auth):
    alice = auth.signup()
    title = "😀" * 200  # 200 characters, 800 bytes
    body = {"title": title, "description": "日本語 · ñandú · \u202e · 𝔘𝔫𝔦𝔠𝔬𝔡𝔢"}
    task = client.post(alice.tasks_url, json=body, headers=alice.headers).json
    fetched = client.get(f"{alice.tasks_url}/{task['id']}", headers=alice.headers).json
    assert fetched["title"] == title
    assert fetched["description"] == body["description"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "title"),
        ({"title": ""}, "title"),
        ({"title": "   "}, "title"),
        ({"title": "x" * 201}, "title"),
        ({"title": " " + "x" * 200}, "title"),  # 201 characters as sent, as documented
        ({"title": None}, "title"),
        ({"title": 42}, "title"),
        ({"title": ["a"]}, "title"),
        ({"title": "nul \x00 byte"}, "title"),
        ({"title": "lone \ud800 surrogate"}, "title"),
        ({"title": "ok", "description": "d" * 10001}, "description"),
        ({"title": "ok", "description": 5}, "description"),
        ({"title": "ok", "completed": "yes"}, "completed"),
        ({"title": "ok", "completed": 1}, "completed"),
        ({"title": "ok", "completed": None}, "completed"),
        ({"title": "ok", "id": 7}, "id"),
        ({"title": "ok", "user_id": "someone-else"}, "user_id"),
        ({"title": "ok", "priority": "urgent"}, "priority"),
        ({"title": "ok", "priority": 3}, "priority"),
        ({"title": "ok", "due_at": "2026-12-01T10:00:00"}, "due_at"),  # no offset
        ({"title": "ok", "due_at": "tomorrow"}, "due_at"),
        ({"title": "ok", "due_at": "0001-01-01T00:00:00+00:01"}, "due_at"),
        ({"title": "ok", "tags": "work"}, "tags"),
        ({"title": "ok", "tags": ["x" * 51]}, "tags"),
        ({"title": "ok", "tags": [""]}, "tags"),
        ({"title": "ok", "tags": ["  "]}, "tags"),
        ({"title": "ok", "tags": ["x" * 50 + " "]}, "tags"),
        ({"title": "ok", "tags": [f"t{n}" for n in range(21)]}, "tags"),
        ({"title": "ok", "completed_at": "2026-12-01T10:00:00+00:00"}, "completed_at"),
    ],
)
def test_create_task_invalid_input_is_422(client, auth, app, body, field):
    alice = auth.signup()
    response = client.post(alice.tasks_url, json=body, headers=alice.headers)
    assert response.status_code == 422
    assert field in response.json["errors"]["json"]
    assert response.json["message"] == response.json["detail"] == "Invalid request."
    with app.app_context():
        assert Task.select().count() == 0


def test_list_is_newest_first_with_pagination_header(client, auth):
    alice = auth.signup()
    for title in ("first", "second", "third"):
        auth.create_task(alice, title=title)
    response = client.get(alice.tasks_url, headers=alice.headers)
    assert response.status_code == 200
    assert [task["title"] for task in response.json] == ["third", "second", "first"]
    pagination = json.loads(response.headers["X-Pagination"])
    assert pagination == {"total": 3, "total_pages": 1, "first_page": 1, "last_page": 1, "page": 1}


def test_list_pages(client, auth):
    alice = auth.signup()
    for number in range(5):
        auth.create_task(alice, title=f"task {number}")
    response = client.get(f"{alice.tasks_url}?page=2&page_size=2", headers=alice.headers)
    assert [task["title"] for task in response.json] == ["task 2", "task 1"]
    pagination = json.loads(response.headers["X-Pagination"])
    assert pagination["total"] == 5
    assert pagination["total_pages"] == 3
    assert (pagination["previous_page"], pagination["next_page"]) == (1, 3)


@pytest.mark.parametrize("page", [2, 9, 2**62, 10**30])
def test_list_page_past_the_end_is_empty(client, auth, page):
    alice = auth.signup()
    auth.create_task(alice)
    response = client.get(f"{alice.tasks_url}?page={page}", headers=alice.headers)
    assert response.status_code == 200
    assert response.json == []


@pytest.mark.parametrize("query", ["page=0", "page=-1", "page=x", "page_size=0", "page_size=501"])
def test_list_bad_pagination_is_422(client, auth, query):
    alice = auth.signup()
    response = client.get(f"{alice.tasks_url}?{query}", headers=alice.headers)
    assert response.status_code == 422
    assert "query" in response.json["errors"]


def test_list_page_size_500_is_allowed(client, auth):
    alice = auth.signup()
    response = client.get(f"{alice.tasks_url}?page_size=500", headers=alice.headers)
    assert response.status_code == 200


def test_list_shows_only_own_tasks(client, auth):
    alice, bob = auth.signup("alice@example.com"), auth.signup("bob@example.com")
    auth.create_task(alice, title="alice's")
    auth.create_task(bob, title="bob's")
    response = client.get(bob.tasks_url, headers=bob.headers)
    assert [task["title"] for task in response.json] == ["bob's"]
    assert json.loads(response.headers["X-Pagination"])["total"] == 1


def test_get_task_has_etag_and_honours_if_none_match(client, auth):
    alice = auth.signup()
    task = auth.create_task(alice)
    url = f"{alice.tasks_url}/{task['id']}"
    response = client.get(url, headers=alice.headers)
    assert response.status_code == 200
    etag = response.headers["ETag"]
    again = client.get(url, headers={**alice.headers, "If-None-Match": etag})
    assert again.status_code == 304
    client.patch(url, json={"completed": True}, headers=alice.headers)
    assert client.get(url, headers=alice.headers).headers["ETag"] != etag


def test_get_task_of_other_user_is_404(client, auth):
    alice, bob = auth.signup("alice@example.com"), auth.signup("bob@example.com")
    task = auth.create_task(alice)
    response = client.get(f"{bob.tasks_url}/{task['id']}", headers=bob.headers)
    assert response.status_code == 404
    assert response.json["detail"] == response.json["message"] == "Task not found."


@pytest.mark.parametrize(
    "task_id", ["0", "-1", "abc", "1.5", "99999999999999999999999", "9223372036854775807"]
)
def test_task_id_that_cannot_exist_is_404(client, auth, task_id):
    alice = auth.signup()
    response = client.get(f"{alice.tasks_url}/{task_id}", headers=alice.headers)
    assert response.status_code == 404
    assert response.json["code"] == 404


def test_put_replaces_and_resets_omitted_fields(client, auth, app):
    alice = auth.signup()
    task = auth.create_task(alice, title="old", description="details", completed=True)
    url = f"{alice.tasks_url}/{task['id']}"
    response = client.put(url, json={"title": "new"}, headers=alice.headers)
    assert response.status_code == 200
    assert (response.json["title"], response.json["description"], response.json["completed"]) == (
        "new",
        None,
        False,
    )
    assert response.json["created_at"] == task["created_at"]
    assert response.json["updated_at"] > task["updated_at"]
    row = stored_task(app, task["id"])
    assert (row.title, row.description, row.completed) == ("new", None, False)


def test_put_without_title_is_422_and_changes_nothing(client, auth, app):
    alice = auth.signup()
    task = auth.create_task(alice, title="keep")
    response = client.put(
        f"{alice.tasks_url}/{task['id']}", json={"completed": True}, headers=alice.headers
    )
    assert response.status_code == 422
    assert stored_task(app, task["id"]).title == "keep"


def test_patch_changes_only_given_fields(client, auth, app):
    alice = auth.signup()
    task = auth.create_task(alice, title="keep", description="this too")
    response = client.patch(
        f"{alice.tasks_url}/{task['id']}", json={"completed": True}, headers=alice.headers
    )
    assert response.status_code == 200
    assert response.json["completed"] is True
    assert response.json["title"] == "keep"
    assert response.json["description"] == "this too"
    assert stored_task(app, task["id"]).completed is True


@pytest.mark.parametrize(
    "body", [{"title": ""}, {"title": None}, {"completed": "true"}, {"owner": "x"}]
)
def test_patch_invalid_input_is_422_and_changes_nothing(client, auth, app, body):
    alice = auth.signup()
    task = auth.create_task(alice, title="keep")
    response = client.patch(f"{alice.tasks_url}/{task['id']}", json=body, headers=alice.headers)
    assert response.status_code == 422
    row = stored_task(app, task["id"])
    assert (row.title, row.completed) == ("keep", False)


# Every route that names a task: (method, path under a tasks URL, body) for a task id.
ROUTES_OF_A_TASK = {
    "GET": lambda task_id: ("GET", f"/{task_id}", None),
    "PUT": lambda task_id: ("PUT", f"/{task_id}", {"title": "mine now"}),
    "PATCH": lambda task_id: ("PATCH", f"/{task_id}", {"title": "mine now"}),
    "DELETE": lambda task_id: ("DELETE", f"/{task_id}", None),
    "complete": lambda task_id: ("PATCH", f"/{task_id}/complete", None),
    "bulk": lambda task_id: ("PATCH", "", {"ids": [task_id], "completed": False}),
}


@pytest.mark.parametrize("route", ROUTES_OF_A_TASK.values(), ids=ROUTES_OF_A_TASK)
def test_other_users_task_is_404_on_every_route_and_unchanged(client, auth, app, route):
    alice, bob = auth.signup("alice@example.com"), auth.signup("bob@example.com")
    method, path, body = route(auth.create_task(alice, title="alice's", completed=True)["id"])
    before = stored_tasks(app)
    response = client.open(bob.tasks_url + path, method=method, json=body, headers=bob.headers)
    assert response.status_code == 404
    assert "alice's" not in response.text
    assert stored_tasks(app) == before


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_writes_without_if_match_are_not_428(client, auth, method):
    alice = auth.signup()
    task = auth.create_task(alice)
    send = getattr(client, method)
    response = send(f"{alice.tasks_url}/{task['id']}", json={"title": "t"}, headers=alice.headers)
    assert response.status_code in (200, 204)


def test_delete_returns_204_then_404(client, auth, app):
    alice = auth.signup()
    task = auth.create_task(alice)
    url = f"{alice.tasks_url}/{task['id']}"
    response = client.delete(url, headers=alice.headers)
    assert response.status_code == 204
    assert response.data == b""
    assert stored_task(app, task["id"]).deleted_at is not None  # kept as a tombstone
    assert client.delete(url, headers=alice.headers).status_code == 404
    assert client.get(url, headers=alice.headers).status_code == 404
    assert client.patch(url, json={"title": "back?"}, headers=alice.headers).status_code == 404
    assert client.get(alice.tasks_url, headers=alice.headers).json == []


@pytest.mark.parametrize("method", ["get", "post"])
def test_task_routes_need_a_token(client, auth, method):
    alice = auth.signup()
    response = getattr(client, method)(alice.tasks_url, json={"title": "t"})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


ROUTES = {
    "list": lambda task_id: ("GET", "", None),
    "create": lambda task_id: ("POST", "", {"title": "t"}),
    "clear": lambda task_id: ("DELETE", "?completed=true", None),
    **ROUTES_OF_A_TASK,
}


@pytest.mark.parametrize("route", ROUTES.values(), ids=ROUTES)
def test_other_users_urls_are_403_on_every_route_and_change_nothing(client, auth, app, route):
    alice, bob = auth.signup("alice@example.com"), auth.signup("bob@example.com")
    method, path, body = route(auth.create_task(alice, completed=True)["id"])
    auth.create_task(bob, completed=True)
    before = stored_tasks(app)
    response = client.open(alice.tasks_url + path, method=method, json=body, headers=bob.headers)
    assert (response.status_code, response.json["code"]) == (403, 403)
    assert stored_tasks(app) == before


def test_new_fields_have_defaults(client, auth):
    alice = auth.signup()
    task = auth.create_task(alice)
    assert (task["priority"], task["due_at"], task["tags"]) == ("none", None, [])
    assert (task["completed_at"], task["deleted_at"]) == (None, None)


def test_new_fields_round_trip(client, auth, app):
    alice = auth.signup()
    body = {"title": "t", "priority": "high", "due_at": "2026-12-24T18:00:00+01:00"}
    task = auth.create_task(alice, **body, tags=[" work ", "home", "work"])
    assert task["due_at"] == "2026-12-24T17:00:00+00:00"
    assert (task["priority"], task["tags"]) == ("high", ["work", "home"])
    with app.app_context():
        assert {tag.tag for tag in TaskTag.select().where(TaskTag.task == task["id"])} == {
            "work",
            "home",
        }


def test_completed_at_follows_completed(client, auth):
    alice = auth.signup()
    task = auth.create_task(alice)
    url = f"{alice.tasks_url}/{task['id']}"
    done = client.patch(url, json={"completed": True}, headers=alice.headers).json
    assert done["completed_at"] is not None
    again = client.patch(url, json={"completed": True, "title": "x"}, headers=alice.headers).json
    assert again["completed_at"] == done["completed_at"]
    reopened = client.patch(url, json={"completed": False}, headers=alice.headers).json
    assert reopened["completed_at"] is None
    assert auth.create_task(alice, completed=True)["completed_at"] is not None


def test_put_resets_new_fields_and_tags(client, auth, app):
    alice = auth.signup()
    task = auth.create_task(alice, priority="high", tags=["a"], due_at="2026-12-01T00:00:00Z")
    response = client.put(
        f"{alice.tasks_url}/{task['id']}", json={"title": "t"}, headers=alice.headers
    )
    assert (response.json["priority"], response.json["tags"], response.json["due_at"]) == (
        "none",
        [],
        None,
    )
    with app.app_context():
        assert TaskTag.select().where(TaskTag.task == task["id"]).count() == 0


def test_patch_replaces_tags(client, auth):
    alice = auth.signup()
    task = auth.create_task(alice, tags=["a", "b"])
    url = f"{alice.tasks_url}/{task['id']}"
    client.patch(url, json={"tags": ["c"]}, headers=alice.headers)
    listed = client.get(f"{alice.tasks_url}?tag=c", headers=alice.headers).json
    assert [t["tags"] for t in listed] == [["c"]]
    assert client.get(f"{alice.tasks_url}?tag=a", headers=alice.headers).json == []


def test_writes_return_the_new_etag(client, auth):
    alice = auth.signup()
    task = auth.create_task(alice)
    url = f"{alice.tasks_url}/{task['id']}"
    etag = client.get(url, headers=alice.headers).headers["ETag"]
    patched = client.patch(url, json={"title": "new"}, headers=alice.headers)
    assert patched.headers["ETag"] != etag
    assert patched.headers["ETag"] == client.get(url, headers=alice.headers).headers["ETag"]


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_stale_if_match_is_412_and_changes_nothing(client, auth, app, method):
    alice = auth.signup()
    task = auth.create_task(alice, title="original")
    url = f"{alice.tasks_url}/{task['id']}"
    stale = client.get(url, headers=alice.headers).headers["ETag"]
    client.patch(url, json={"completed": True}, headers=alice.headers)
    headers = {**alice.headers, "If-Match": stale}
    response = getattr(client, method)(url, json={"title": "clobbered"}, headers=headers)
    assert response.status_code == 412
    assert response.json["detail"].startswith("The task changed since you read it")
    row = stored_task(app, task["id"])
    assert (row.title, row.completed, row.deleted_at) == ("original", True, None)


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_current_if_match_lets_the_write_through(client, auth, method):
    alice = auth.signup()
    task = auth.create_task(alice)
    url = f"{alice.tasks_url}/{task['id']}"
    current = client.get(url, headers=alice.headers).headers["ETag"]
    for if_match in (current, "*"):
        headers = {**alice.headers, "If-Match": if_match}
        response = getattr(client, method)(url, json={"title": "t"}, headers=headers)
        assert response.status_code in (200, 204)
        if method == "delete":
            break
        current = response.headers["ETag"]


def test_if_match_on_a_missing_task_is_412_or_404(client, auth):
    alice = auth.signup()
    url = f"{alice.tasks_url}/999999"
    assert (
        client.patch(
            url, json={"title": "t"}, headers={**alice.headers, "If-Match": "*"}
        ).status_code
        == 412
    )
    assert (
        client.patch(
            url, json={"title": "t"}, headers={**alice.headers, "If-Match": '"x"'}
        ).status_code
        == 404
    )


def test_idempotency_key_creates_once_and_replays(client, auth, app):
    alice = auth.signup()
    headers = {**alice.headers, "Idempotency-Key": "create-1"}
    first = client.post(alice.tasks_url, json={"title": "once"}, headers=headers)
    again = client.post(alice.tasks_url, json={"title": "once"}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json == again.json
    assert first.headers["Location"] == again.headers["Location"]
    with app.app_context():
        assert Task.select().count() == 1


def test_idempotency_key_with_another_body_is_422(client, auth, app):
    alice = auth.signup()
    headers = {**alice.headers, "Idempotency-Key": "create-2"}
    client.post(alice.tasks_url, json={"title": "once"}, headers=headers)
    response = client.post(alice.tasks_url, json={"title": "different"}, headers=headers)
    assert response.status_code == 422
    assert "different body" in response.json["message"]
    with app.app_context():
        assert Task.select().count() == 1


def test_idempotency_keys_are_per_user_and_expire(client, auth, app):
    alice, bob = auth.signup("alice@example.com"), auth.signup("bob@example.com")
    for user in (alice, bob):
        headers = {**user.headers, "Idempotency-Key": "same"}
        assert client.post(user.tasks_url, json={"title": "t"}, headers=headers).status_code == 201
    with app.app_context():
        IdempotencyKey.update(created_at=utcnow() - timedelta(hours=25)).execute()
    headers = {**alice.headers, "Idempotency-Key": "same"}
    client.post(alice.tasks_url, json={"title": "t"}, headers=headers)
    with app.app_context():
        assert Task.select().where(Task.user == alice.id).count() == 2


def test_idempotency_key_of_another_user_replays_nothing_of_theirs(client, auth, app):
    alice, bob = auth.signup("alice@example.com"), auth.signup("bob@example.com")
    create = lambda user: client.post(  # noqa: E731
        user.tasks_url, json={"title": "t"}, headers={**user.headers, "Idempotency-Key": "k"}
    )
    alices, bobs = create(alice), create(bob)
    assert (bobs.status_code, bobs.json["user_id"]) == (201, bob.id)
    assert bobs.json["id"] != alices.json["id"]
    assert (create(alice).json, create(bob).json) == (alices.json, bobs.json)  # the retries
    with app.app_context():
        keys = {key.user_id: json.loads(key.response)["id"] for key in IdempotencyKey.select()}
    assert keys == {alice.id: alices.json["id"], bob.id: bobs.json["id"]}


def test_concurrent_retries_with_one_key_create_one_task(live_server, app):
    account = {"email": "retry@x.io", "password": "correct horse"}
    user = requests.post(f"{live_server}/api/auth/signup", json=account, timeout=30).json()
    url = f"{live_server}/api/users/{user['user']['id']}/tasks"
    headers = {"Authorization": f"Bearer {user['access_token']}", "Idempotency-Key": "k"}
    body = {"title": "t"}
    with ThreadPoolExecutor(max_workers=10) as pool:
        responses = list(
            pool.map(lambda _: requests.post(url, json=body, headers=headers), range(10))
        )
    assert [response.status_code for response in responses] == [201] * 10
    assert len({response.json()["id"] for response in responses}) == 1
    with app.app_context():
        assert Task.select().count() == 1


@pytest.mark.parametrize("key", ["", "k" * 256])
def test_malformed_idempotency_key_is_422(client, auth, key):
    alice = auth.signup()
    headers = {**alice.headers, "Idempotency-Key": key}
    assert client.post(alice.tasks_url, json={"title": "t"}, headers=headers).status_code == 422


def test_bulk_complete_is_all_or_nothing(client, auth, app):
    alice, bob = auth.signup("alice@example.com"), auth.signup("bob@example.com")
    mine = [auth.create_task(alice)["id"] for _ in range(3)]
    theirs = auth.create_task(bob)["id"]
    response = client.patch(
        alice.tasks_url, json={"ids": [*mine, theirs], "completed": True}, headers=alice.headers
    )
    assert response.status_code == 404
    assert str(theirs) in response.json["message"]
    with app.app_context():
        assert Task.select().where(Task.completed).count() == 0
    response = client.patch(
        alice.tasks_url, json={"ids": mine, "completed": True}, headers=alice.headers
    )
    assert [task["id"] for task in response.json] == sorted(mine)
    assert all(task["completed"] and task["completed_at"] for task in response.json)


@pytest.mark.parametrize("completed", ["yes", 1, "true", 0, None, "false"])
def test_bulk_complete_needs_a_json_boolean_and_changes_nothing(client, auth, app, completed):
    alice = auth.signup()
    ids = [auth.create_task(alice, completed=done)["id"] for done in (False, True)]
    before = stored_tasks(app)
    body = {"ids": ids, "completed": completed}
    response = client.patch(alice.tasks_url, json=body, headers=alice.headers)
    assert response.status_code == 422
    assert list(response.json["errors"]["json"]) == ["completed"]
    assert stored_tasks(app) == before


def test_clear_completed_in_one_call(client, auth):
    alice = auth.signup()
    auth.create_task(alice, title="open")
    for _ in range(2):
        auth.create_task(alice, title="done", completed=True)
    response = client.delete(f"{alice.tasks_url}?completed=true", headers=alice.headers)
    assert (response.status_code, response.json) == (200, {"deleted": 2})
    assert [task["title"] for task in client.get(alice.tasks_url, headers=alice.headers).json] == [
        "open"
    ]


def test_clearing_completed_leaves_other_users_tasks(client, auth, app):
    alice, bob = auth.signup("alice@example.com"), auth.signup("bob@example.com")
    auth.create_task(alice, completed=True)
    bobs = sorted(auth.create_task(bob, completed=True)["id"] for _ in range(2))
    response = client.delete(f"{alice.tasks_url}?completed=true", headers=alice.headers)
    assert (response.status_code, response.json) == (200, {"deleted": 1})
    listed = client.get(bob.tasks_url, headers=bob.headers).json
    assert sorted(task["id"] for task in listed) == bobs
    with app.app_context():
        assert [task.deleted_at for task in Task.select().where(Task.user == bob.id)] == [None] * 2


@pytest.mark.parametrize("query", ["", "?completed=false", "?completed=yes"])
def test_clearing_needs_completed_true(client, auth, app, query):
    alice = auth.signup()
    auth.create_task(alice)
    assert client.delete(f"{alice.tasks_url}{query}", headers=alice.headers).status_code == 422
    with app.app_context():
        assert Task.select().where(Task.deleted_at.is_null()).count() == 1


def test_complete_toggles(client, auth):
    alice = auth.signup()
    task = auth.create_task(alice)
    url = f"{alice.tasks_url}/{task['id']}/complete"
    first = client.patch(url, headers=alice.headers).json
    second = client.patch(url, headers=alice.headers).json
    assert (first["completed"], bool(first["completed_at"])) == (True, True)
    assert (second["completed"], second["completed_at"]) == (False, None)


def test_routes_without_users_segment_are_aliases(client, auth):
    alice = auth.signup()
    base = f"/api/{alice.id}/tasks"
    created = client.post(base, json={"title": "via alias"}, headers=alice.headers)
    assert created.status_code == 201
    assert created.headers["Location"].endswith(f"/api/users/{alice.id}/tasks/{created.json['id']}")
    url = f"{base}/{created.json['id']}"
    assert client.get(url, headers=alice.headers).json["title"] == "via alias"
    assert client.patch(f"{url}/complete", headers=alice.headers).json["completed"] is True
    assert client.get(base, headers=alice.headers).json[0]["id"] == created.json["id"]
    assert client.delete(url, headers=alice.headers).status_code == 204
    bob = auth.signup("bob@example.com")
    assert client.get(f"/api/{bob.id}/tasks", headers=alice.headers).status_code == 403


@pytest.mark.parametrize(
    "method, path, body",
    [
        ("GET", "", None),
        ("GET", "/{id}", None),
        ("PUT", "/{id}", {"title": "new", "tags": ["a", "b"]}),
        ("PATCH", "/{id}", {"tags": ["c"]}),
    ],
)
def test_a_request_takes_two_queries(client, auth, caplog, method, path, body):
    """The token's user and the data: nothing else goes to the database (peewee logs each);
    the tags' index table is the database's own business (triggers)."""
    alice = auth.signup()
    task = auth.create_task(alice, tags=["old"])
    url = alice.tasks_url + path.format(id=task["id"])
    with caplog.at_level(logging.DEBUG, logger="peewee"):
        response = client.open(url, method=method, json=body, headers=alice.headers)
    assert response.status_code == 200
    queries = [record.getMessage() for record in caplog.records if record.name == "peewee"]
    assert len(queries) == 2, queries
    tags = body["tags"] if body else ["old"]
    for tag, found in [(tags[0], [task["id"]]), ("old", [task["id"]] if not body else [])]:
        listed = client.get(f"{alice.tasks_url}?tag={tag}", headers=alice.headers).json
        assert [each["id"] for each in listed] == found
