"""Lists, subtasks and the order a user sets, through HTTP on both databases."""

import hashlib
import json
import random

import pytest

from taskapi.models import IdempotencyKey, Task, TaskList, User
from taskapi.ordering import MAX_DEPTH

from .test_auth import bearer, mint


@pytest.fixture
def alice(auth):
    return auth.signup("alice@example.com")


@pytest.fixture
def bob(auth):
    return auth.signup("bob@example.com")


def make_list(client, user, name="Work", **fields):
    response = client.post(user.lists_url, json={"name": name, **fields}, headers=user.headers)
    assert response.status_code == 201, response.json
    return response.json


def get_lists(client, user, query=""):
    response = client.get(f"{user.lists_url}?{query}", headers=user.headers)
    assert response.status_code == 200, response.json
    return response.json


def inbox_of(client, user):
    return next(found for found in get_lists(client, user) if found["is_inbox"])


def move(client, user, task_id, **fields):
    return client.post(f"{user.tasks_url}/{task_id}/move", json=fields, headers=user.headers)


def shown(client, user, list_id, query=""):
    """The list's tasks as it shows them: titles, depth first."""
    url = f"{user.tasks_url}?list_id={list_id}&sort=position&page_size=500&{query}"
    response = client.get(url, headers=user.headers)
    assert response.status_code == 200, response.json
    return [task["title"] for task in response.json]


def check_paths(app):
    """What is stored: every live task's path is its parent's path, its position and a dot,
    and no two live siblings share a position."""
    with app.app_context():
        tasks = {task.id: task for task in Task.select().where(Task.deleted_at.is_null())}
    for task in tasks.values():
        parent_path = tasks[task.parent_id].path if task.parent_id else ""
        assert task.path == f"{parent_path}{task.position}.", (task.title, task.path)
    places = [(task.list_id, task.parent_id, task.position) for task in tasks.values()]
    assert len(set(places)) == len(places)


def field_error(response, field):
    assert response.status_code == 422, response.json
    return response.json["errors"]["json"][field]


# Lists


def test_every_user_has_one_inbox_from_the_start(client, alice, app):
    (inbox,) = get_lists(client, alice)
    assert inbox["is_inbox"] is True and inbox["name"] == "Inbox"
    assert inbox["task_count"] == 0 and inbox["deleted_at"] is None
    provisioned = bearer(mint(sub="ba-user", email="frontend@example.com"))
    response = client.get("/api/users/ba-user/lists", headers=provisioned)
    assert [found["is_inbox"] for found in response.json] == [True]
    with app.app_context():
        assert TaskList.select().where(TaskList.is_inbox).count() == User.select().count() == 2


def test_lists_are_made_last_and_read_back_in_order(client, alice):
    work = make_list(client, alice, "  Work  ", color="#3B82F6")
    home = make_list(client, alice, "Home")
    assert work["name"] == "Work" and work["color"] == "#3B82F6" and home["color"] is None
    names = [found["name"] for found in get_lists(client, alice)]
    assert names == ["Inbox", "Work", "Home"]
    positions = [found["position"] for found in get_lists(client, alice)]
    assert positions == sorted(positions)


def test_task_etags_and_idempotency_keys_are_as_before_lists(client, app, alice):
    """An ETag or an Idempotency-Key a client kept from before lists still works after."""
    body = {"title": "Buy milk"}
    key = {**alice.headers, "Idempotency-Key": "k1"}
    created = client.post(alice.tasks_url, json=body, headers=key)
    old_etag = hashlib.sha1(f"{created.json['id']}:{created.json['updated_at']}".encode())
    assert created.headers["ETag"] == f'"{old_etag.hexdigest()}"'
    old_fields = {"completed": False, "description": None, "due_at": None, "priority": "none"}
    old_body = json.dumps({**old_fields, "tags": [], **body}, sort_keys=True)
    with app.app_context():
        stored = IdempotencyKey.get(IdempotencyKey.idempotency_key == "k1")
    assert stored.request_hash == hashlib.sha256(old_body.encode()).hexdigest()


def test_a_new_list_answers_with_its_location_and_etag(client, alice):
    response = client.post(alice.lists_url, json={"name": "Work"}, headers=alice.headers)
    assert response.headers["Location"] == f"{alice.lists_url}/{response.json['id']}"
    got = client.get(response.headers["Location"], headers=alice.headers)
    assert got.status_code == 200 and got.headers["ETag"] == response.headers["ETag"]
    again = {**alice.headers, "If-None-Match": got.headers["ETag"]}
    assert client.get(response.headers["Location"], headers=again).status_code == 304


@pytest.mark.parametrize(
    "body, field",
    [
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"name": 5}, "name"),
        ({"name": "Work", "color": "blue"}, "color"),
        ({"name": "Work", "color": "#12345"}, "color"),
        ({"name": "Work", "color": "#123456\n"}, "color"),
        ({"name": "Work", "is_inbox": True}, "is_inbox"),
        ({"name": "Work", "position": "a0"}, "position"),
        ({"name": "Work", "task_count": 3}, "task_count"),
    ],
)
def test_bad_list_fields_are_422_naming_them(client, alice, body, field):
    response = client.post(alice.lists_url, json=body, headers=alice.headers)
    assert field in field_error(response, field) or field_error(response, field)


def test_a_lists_etag_changes_with_its_task_count(client, auth, alice):
    """No 304 with a stale count: the count is part of the list's version."""
    work = make_list(client, alice)
    url = f"{alice.lists_url}/{work['id']}"
    etag = client.get(url, headers=alice.headers).headers["ETag"]
    auth.create_task(alice, list_id=work["id"])
    again = client.get(url, headers={**alice.headers, "If-None-Match": etag})
    assert again.status_code == 200 and again.json["task_count"] == 1


def test_rename_with_if_match_refuses_a_stale_version(client, alice):
    work = make_list(client, alice)
    url = f"{alice.lists_url}/{work['id']}"
    etag = client.get(url, headers=alice.headers).headers["ETag"]
    renamed = client.patch(url, json={"name": "Job"}, headers={**alice.headers, "If-Match": etag})
    assert renamed.status_code == 200 and renamed.json["name"] == "Job"
    assert renamed.json["updated_at"] > work["updated_at"]
    stale = client.patch(
        url, json={"color": "#000000"}, headers={**alice.headers, "If-Match": etag}
    )
    assert stale.status_code == 412
    assert client.get(url, headers=alice.headers).json["color"] is None


def test_deleting_a_list_leaves_tombstones_of_it_and_its_tasks(client, auth, alice):
    work = make_list(client, alice)
    parent = auth.create_task(alice, title="parent", list_id=work["id"])
    auth.create_task(alice, title="child", parent_id=parent["id"])
    kept = auth.create_task(alice, title="kept")
    url = f"{alice.lists_url}/{work['id']}"
    assert client.delete(url, headers=alice.headers).status_code == 204
    assert client.get(url, headers=alice.headers).status_code == 404
    assert [found["name"] for found in get_lists(client, alice)] == ["Inbox"]
    deleted = get_lists(client, alice, "include_deleted=true")
    assert [found["deleted_at"] is not None for found in deleted] == [False, True]
    listed = client.get(alice.tasks_url, headers=alice.headers)
    assert [task["id"] for task in listed.json] == [kept["id"]]
    assert json.loads(listed.headers["X-Pagination"])["total"] == 1
    synced = client.get(f"{alice.tasks_url}?include_deleted=true", headers=alice.headers).json
    assert sorted(task["title"] for task in synced if task["deleted_at"]) == ["child", "parent"]


def test_a_stale_if_match_keeps_a_list_from_deletion(client, auth, alice):
    work = make_list(client, alice)
    url = f"{alice.lists_url}/{work['id']}"
    etag = client.get(url, headers=alice.headers).headers["ETag"]
    client.patch(url, json={"name": "Job"}, headers=alice.headers)
    stale = client.delete(url, headers={**alice.headers, "If-Match": etag})
    assert stale.status_code == 412
    fresh = {**alice.headers, "If-Match": client.get(url, headers=alice.headers).headers["ETag"]}
    assert client.delete(url, headers=fresh).status_code == 204
    assert client.delete(url, headers=fresh).status_code == 412


def test_the_inbox_is_made_with_the_account(client, alice):
    me = client.get("/api/auth/me", headers=alice.headers).json
    inbox = inbox_of(client, alice)
    assert inbox["created_at"] == inbox["updated_at"] == me["created_at"]


def test_the_inbox_cannot_be_deleted(client, alice):
    inbox = inbox_of(client, alice)
    response = client.delete(f"{alice.lists_url}/{inbox['id']}", headers=alice.headers)
    assert response.status_code == 409 and response.json["detail"]
    assert inbox_of(client, alice)["deleted_at"] is None


def test_lists_move_after_another_or_first(client, alice):
    work, home, gym = (make_list(client, alice, name) for name in ("Work", "Home", "Gym"))

    def move_list(moved, previous_id):
        url = f"{alice.lists_url}/{moved['id']}/move"
        response = client.post(url, json={"previous_id": previous_id}, headers=alice.headers)
        assert response.status_code == 200, response.json
        return [found["name"] for found in get_lists(client, alice)]

    assert move_list(gym, None) == ["Gym", "Inbox", "Work", "Home"]
    assert move_list(work, home["id"]) == ["Gym", "Inbox", "Home", "Work"]
    assert move_list(gym, work["id"]) == ["Inbox", "Home", "Work", "Gym"]
    url = f"{alice.lists_url}/{gym['id']}/move"
    refused = client.post(url, json={"previous_id": gym["id"]}, headers=alice.headers)
    assert field_error(refused, "previous_id")


def test_many_list_moves_to_one_place_stay_in_order(client, alice):
    """Always right after the inbox: the positions there run out, and the lists are laid
    out afresh, in the same order."""
    inbox, expected = inbox_of(client, alice), ["Inbox"]
    for number in range(250):
        made = make_list(client, alice, f"list {number}")
        url = f"{alice.lists_url}/{made['id']}/move"
        assert client.post(url, json={"previous_id": inbox["id"]}, headers=alice.headers).json
        expected.insert(1, made["name"])
    lists = get_lists(client, alice)
    assert [found["name"] for found in lists] == expected
    assert max(len(found["position"]) for found in lists) <= 40


def test_list_sync_sees_changes_since(client, alice):
    work = make_list(client, alice)
    since = client.get(f"{alice.lists_url}/{work['id']}", headers=alice.headers).json["updated_at"]
    make_list(client, alice, "Home")
    changed = get_lists(client, alice, f"updated_since={since.replace('+', '%2B')}")
    assert [found["name"] for found in changed] == ["Home"]
    for query in ("bogus=1", "page=1", "page_size=5"):  # lists come whole, not in pages
        assert client.get(f"{alice.lists_url}?{query}", headers=alice.headers).status_code == 422


# Tasks in lists


def test_a_task_goes_to_the_inbox_unless_told_otherwise(client, auth, alice):
    inbox, work = inbox_of(client, alice), make_list(client, alice)
    assert auth.create_task(alice, title="plain")["list_id"] == inbox["id"]
    in_work = auth.create_task(alice, title="work", list_id=work["id"])
    assert in_work["list_id"] == work["id"] and in_work["parent_id"] is None
    child = auth.create_task(alice, title="child", parent_id=in_work["id"])
    assert child["list_id"] == work["id"] and child["parent_id"] == in_work["id"]
    counts = {found["name"]: found["task_count"] for found in get_lists(client, alice)}
    assert counts == {"Inbox": 1, "Work": 2}


def test_new_tasks_go_last_among_their_siblings(client, auth, alice):
    inbox = inbox_of(client, alice)
    first = auth.create_task(alice, title="first")
    auth.create_task(alice, title="first's child", parent_id=first["id"])
    auth.create_task(alice, title="second")
    auth.create_task(alice, title="first's second child", parent_id=first["id"])
    expected = ["first", "first's child", "first's second child", "second"]
    assert shown(client, alice, inbox["id"]) == expected


def test_an_old_client_sees_no_difference(client, auth, alice):
    """No list_id sent, none read: newest first, across every list, counted as before."""
    work = make_list(client, alice)
    auth.create_task(alice, title="older", list_id=work["id"])
    auth.create_task(alice, title="newer")
    response = client.get(alice.tasks_url, headers=alice.headers)
    assert [task["title"] for task in response.json] == ["newer", "older"]
    assert json.loads(response.headers["X-Pagination"])["total"] == 2


def test_list_and_parent_of_another_user_are_422_revealing_nothing(client, auth, alice, bob):
    bobs_list = make_list(client, bob, "Bob's")
    bobs_task = auth.create_task(bob, title="bob's")
    for body, field in [
        ({"list_id": bobs_list["id"]}, "list_id"),
        ({"list_id": 2**62}, "list_id"),
        ({"parent_id": bobs_task["id"]}, "parent_id"),
        ({"parent_id": 2**62}, "parent_id"),
    ]:
        response = client.post(alice.tasks_url, json={"title": "x", **body}, headers=alice.headers)
        mine = client.post(alice.tasks_url, json={"title": "x", **body}, headers=alice.headers)
        assert field_error(response, field) == field_error(mine, field)
    assert get_lists(client, bob)[1]["task_count"] == 0


def test_a_parent_must_be_in_the_given_list(client, auth, alice):
    work = make_list(client, alice)
    in_inbox = auth.create_task(alice, title="inbox task")
    body = {"title": "x", "list_id": work["id"], "parent_id": in_inbox["id"]}
    assert field_error(client.post(alice.tasks_url, json=body, headers=alice.headers), "parent_id")


def test_tasks_nest_four_levels_deep_and_no_deeper(client, auth, alice):
    parent = auth.create_task(alice, title="level 1")
    for level in range(2, MAX_DEPTH + 1):
        parent = auth.create_task(alice, title=f"level {level}", parent_id=parent["id"])
    body = {"title": "level 5", "parent_id": parent["id"]}
    response = client.post(alice.tasks_url, json=body, headers=alice.headers)
    assert field_error(response, "parent_id") == ["Tasks nest at most 4 levels deep."]


@pytest.mark.parametrize("field, value", [("list_id", 1), ("parent_id", None), ("position", "a0")])
def test_place_fields_are_unknown_to_put_and_patch(client, auth, alice, field, value):
    task = auth.create_task(alice, title="stays")
    url = f"{alice.tasks_url}/{task['id']}"
    put = client.put(url, json={"title": "t", field: value}, headers=alice.headers)
    patch = client.patch(url, json={field: value}, headers=alice.headers)
    assert field_error(put, field) == field_error(patch, field) == ["Unknown field."]


def test_a_put_keeps_the_task_where_it_is(client, auth, alice):
    work = make_list(client, alice)
    parent = auth.create_task(alice, title="parent", list_id=work["id"])
    child = auth.create_task(alice, title="child", parent_id=parent["id"])
    url = f"{alice.tasks_url}/{child['id']}"
    put = client.put(url, json={"title": "renamed"}, headers=alice.headers).json
    place = ("list_id", "parent_id", "position")
    assert [put[name] for name in place] == [child[name] for name in place]


def test_filters_by_list_and_parent(client, auth, alice):
    work = make_list(client, alice)
    parent = auth.create_task(alice, title="parent", list_id=work["id"])
    auth.create_task(alice, title="child", parent_id=parent["id"])
    auth.create_task(alice, title="elsewhere")
    by_list = client.get(f"{alice.tasks_url}?list_id={work['id']}", headers=alice.headers)
    assert sorted(task["title"] for task in by_list.json) == ["child", "parent"]
    assert json.loads(by_list.headers["X-Pagination"])["total"] == 2
    under = client.get(f"{alice.tasks_url}?parent_id={parent['id']}", headers=alice.headers)
    assert [task["title"] for task in under.json] == ["child"]
    assert client.get(f"{alice.tasks_url}?list_id=x", headers=alice.headers).status_code == 422


def test_another_users_list_filter_shows_nothing(client, auth, alice, bob):
    bobs_list = make_list(client, bob, "Bob's")
    auth.create_task(bob, title="bob's", list_id=bobs_list["id"])
    url = f"{alice.tasks_url}?list_id={bobs_list['id']}&sort=position"
    response = client.get(url, headers=alice.headers)
    assert response.json == [] and json.loads(response.headers["X-Pagination"])["total"] == 0


def test_position_order_paginates_like_any_other(client, auth, alice):
    inbox = inbox_of(client, alice)
    for number in range(5):
        top = auth.create_task(alice, title=f"{number}")
        auth.create_task(alice, title=f"{number}.1", parent_id=top["id"])
    whole = shown(client, alice, inbox["id"])
    pages = []
    for page in (1, 2, 3, 4):
        url = f"{alice.tasks_url}?list_id={inbox['id']}&sort=position&page_size=3&page={page}"
        response = client.get(url, headers=alice.headers)
        pages += [task["title"] for task in response.json]
        assert json.loads(response.headers["X-Pagination"])["total"] == 10
    assert pages == whole == [f"{n}{suffix}" for n in range(5) for suffix in ("", ".1")]
    reverse = client.get(
        f"{alice.tasks_url}?list_id={inbox['id']}&sort=-position", headers=alice.headers
    )
    assert [task["title"] for task in reverse.json] == whole[::-1]


def test_position_order_needs_a_list(client, alice):
    """Positions order the tasks of one list; across lists they mean nothing."""
    response = client.get(f"{alice.tasks_url}?sort=-position", headers=alice.headers)
    assert response.status_code == 422 and response.json["errors"]["query"]["sort"]


# Moves


@pytest.fixture
def tree(client, auth, alice):
    """Inbox: a (a1, a2 (a2x)), b, c; and an empty list Work."""
    made = {}
    for title, parent in [("a", None), ("a1", "a"), ("a2", "a"), ("a2x", "a2"), ("b", None)]:
        fields = {"parent_id": made[parent]["id"]} if parent else {}
        made[title] = auth.create_task(alice, title=title, **fields)
    made["c"] = auth.create_task(alice, title="c")
    made["inbox"], made["work"] = inbox_of(client, alice), make_list(client, alice)
    return made


def test_move_within_a_list(client, alice, tree):
    inbox = tree["inbox"]["id"]
    assert move(client, alice, tree["c"]["id"], previous_id=None).status_code == 200
    assert shown(client, alice, inbox) == ["c", "a", "a1", "a2", "a2x", "b"]
    assert move(client, alice, tree["a"]["id"], previous_id=tree["b"]["id"]).status_code == 200
    assert shown(client, alice, inbox) == ["c", "b", "a", "a1", "a2", "a2x"]


def test_move_under_another_task(client, alice, tree):
    moved = move(
        client, alice, tree["c"]["id"], parent_id=tree["a"]["id"], previous_id=tree["a1"]["id"]
    )
    assert moved.status_code == 200 and moved.json["parent_id"] == tree["a"]["id"]
    assert shown(client, alice, tree["inbox"]["id"]) == ["a", "a1", "c", "a2", "a2x", "b"]
    back = move(client, alice, tree["a2"]["id"], previous_id=tree["b"]["id"])
    assert back.json["parent_id"] is None
    assert shown(client, alice, tree["inbox"]["id"]) == ["a", "a1", "c", "b", "a2", "a2x"]


def test_a_move_under_a_task_of_another_list_goes_to_that_list(client, auth, alice, tree):
    other = auth.create_task(alice, title="in work", list_id=tree["work"]["id"])
    moved = move(client, alice, tree["a2"]["id"], parent_id=other["id"])
    assert moved.status_code == 200 and moved.json["list_id"] == tree["work"]["id"]
    assert shown(client, alice, tree["work"]["id"]) == ["in work", "a2", "a2x"]
    refused = move(
        client, alice, tree["b"]["id"], list_id=tree["inbox"]["id"], parent_id=other["id"]
    )
    assert field_error(refused, "parent_id")


def test_a_move_to_another_list_takes_the_subtasks(client, alice, tree):
    moved = move(client, alice, tree["a"]["id"], list_id=tree["work"]["id"])
    assert moved.status_code == 200 and moved.json["list_id"] == tree["work"]["id"]
    assert shown(client, alice, tree["work"]["id"]) == ["a", "a1", "a2", "a2x"]
    assert shown(client, alice, tree["inbox"]["id"]) == ["b", "c"]
    counts = {found["name"]: found["task_count"] for found in get_lists(client, alice)}
    assert counts == {"Inbox": 2, "Work": 4}
    child = client.get(f"{alice.tasks_url}/{tree['a2x']['id']}", headers=alice.headers).json
    assert child["list_id"] == tree["work"]["id"]


def test_everything_a_move_changes_is_seen_by_sync(client, alice, tree):
    since = tree["work"]["updated_at"].replace("+", "%2B")
    move(client, alice, tree["a2"]["id"], list_id=tree["work"]["id"])
    url = f"{alice.tasks_url}?updated_since={since}&include_deleted=true"
    changed = {task["title"] for task in client.get(url, headers=alice.headers).json}
    assert changed == {"a2", "a2x"}


@pytest.mark.parametrize("under", ["a", "a2", "a2x"])
def test_no_task_goes_under_itself_or_its_subtasks(client, alice, tree, under):
    response = move(client, alice, tree["a"]["id"], parent_id=tree[under]["id"])
    assert field_error(response, "parent_id")
    assert shown(client, alice, tree["inbox"]["id"]) == ["a", "a1", "a2", "a2x", "b", "c"]


def test_a_move_may_not_nest_a_subtree_too_deep(client, auth, alice, tree):
    deep = auth.create_task(alice, title="a2xy", parent_id=tree["a2x"]["id"])  # level 4
    response = move(client, alice, tree["a2"]["id"], parent_id=tree["a1"]["id"])  # 2 + 3 levels
    assert field_error(response, "parent_id") == ["Tasks nest at most 4 levels deep."]
    assert move(client, alice, tree["b"]["id"], parent_id=deep["id"]).status_code == 422
    assert move(client, alice, tree["b"]["id"], parent_id=tree["a2x"]["id"]).status_code == 200


def test_previous_must_be_one_of_the_new_siblings(client, alice, bob, auth, tree):
    bobs = auth.create_task(bob, title="bob's")
    for previous in (tree["a2x"]["id"], tree["b"]["id"], bobs["id"], 2**62):
        response = move(
            client, alice, tree["c"]["id"], parent_id=tree["a"]["id"], previous_id=previous
        )
        assert field_error(response, "previous_id")


def test_moves_of_other_users_tasks_and_lists_are_404(client, auth, alice, bob, tree):
    bobs_list = make_list(client, bob, "Bob's")
    bobs_task = auth.create_task(bob, title="bob's")
    assert move(client, alice, bobs_task["id"]).status_code == 404
    assert field_error(move(client, alice, tree["a"]["id"], list_id=bobs_list["id"]), "list_id")
    assert field_error(move(client, alice, tree["a"]["id"], parent_id=bobs_task["id"]), "parent_id")
    for method in ("get", "patch", "delete"):
        response = getattr(client, method)(
            f"{alice.lists_url}/{bobs_list['id']}", json={}, headers=alice.headers
        )
        assert response.status_code == 404
    url = f"{alice.lists_url}/{bobs_list['id']}/move"
    assert client.post(url, json={}, headers=alice.headers).status_code == 404
    assert client.get(bob.lists_url, headers=alice.headers).status_code == 403
    assert [found["name"] for found in get_lists(client, bob)] == ["Inbox", "Bob's"]


def test_bad_move_bodies_are_422(client, alice, tree):
    url = f"{alice.tasks_url}/{tree['a']['id']}/move"
    for body in ({"list_id": None}, {"parent_id": "1"}, {"previous_id": 1.5}, {"position": "a0"}):
        assert client.post(url, json=body, headers=alice.headers).status_code == 422
    assert (
        client.post(
            url, data="{", headers={**alice.headers, "Content-Type": "application/json"}
        ).status_code
        == 400
    )


def test_deleting_a_task_deletes_its_subtasks(client, alice, tree):
    url = f"{alice.tasks_url}/{tree['a']['id']}"
    assert client.delete(url, headers=alice.headers).status_code == 204
    assert shown(client, alice, tree["inbox"]["id"]) == ["b", "c"]
    assert inbox_of(client, alice)["task_count"] == 2
    gone = client.get(f"{alice.tasks_url}?include_deleted=true", headers=alice.headers).json
    assert sorted(task["title"] for task in gone if task["deleted_at"]) == ["a", "a1", "a2", "a2x"]


def test_completing_a_task_leaves_its_subtasks_alone(client, alice, tree):
    url = f"{alice.tasks_url}/{tree['a']['id']}"
    assert client.patch(url, json={"completed": True}, headers=alice.headers).json["completed"]
    child = client.get(f"{alice.tasks_url}/{tree['a1']['id']}", headers=alice.headers).json
    assert child["completed"] is False


def test_clearing_completed_tasks_of_one_list(client, auth, alice, tree):
    done_in_work = auth.create_task(
        alice, title="done in work", list_id=tree["work"]["id"], completed=True
    )
    client.patch(
        f"{alice.tasks_url}/{tree['a2']['id']}", json={"completed": True}, headers=alice.headers
    )
    cleared = client.delete(
        f"{alice.tasks_url}?completed=true&list_id={tree['inbox']['id']}", headers=alice.headers
    )
    assert cleared.status_code == 200 and cleared.json == {"deleted": 2}  # a2 and its a2x
    assert shown(client, alice, tree["inbox"]["id"]) == ["a", "a1", "b", "c"]
    assert shown(client, alice, tree["work"]["id"]) == [done_in_work["title"]]


def test_the_migration_kept_positions_valid_for_new_tasks(client, auth, alice, app):
    """Tasks numbered by the migration (h00000000, ...) take new ones after them."""
    with app.app_context():
        inbox = TaskList.get(TaskList.user == alice.id, TaskList.is_inbox)
        for number in range(3):
            position = f"h{number:08d}"
            Task.create(
                user=alice.id,
                title=f"old {number}",
                task_list=inbox,
                position=position,
                path=position + ".",
            )
    auth.create_task(alice, title="new")
    tree_order = shown(client, alice, inbox.id)
    assert tree_order == ["old 0", "old 1", "old 2", "new"]


# The whole model: random work against a model of the lists, fixed seeds


class Model:
    """What the lists should show: per list, a tree of task ids."""

    def __init__(self, list_ids):
        self.children = {(list_id, None): [] for list_id in list_ids}
        self.where = {}  # task id -> (list id, parent id)

    def add(self, task_id, list_id, parent_id, index=None):
        siblings = self.children.setdefault((list_id, parent_id), [])
        siblings.insert(len(siblings) if index is None else index, task_id)
        self.where[task_id] = (list_id, parent_id)

    def subtree(self, task_id):
        list_id, _ = self.where[task_id]
        found = [task_id]
        for child in self.children.get((list_id, task_id), []):
            found += self.subtree(child)
        return found

    def depth(self, task_id):
        parent = self.where[task_id][1]
        return 1 if parent is None else 1 + self.depth(parent)

    def height(self, task_id):
        list_id = self.where[task_id][0]
        return 1 + max(
            (self.height(c) for c in self.children.get((list_id, task_id), [])), default=0
        )

    def remove(self, task_id):
        list_id, parent_id = self.where[task_id]
        self.children[(list_id, parent_id)].remove(task_id)

    def move(self, task_id, list_id, parent_id, previous_id):
        old_list, moved = self.where[task_id][0], self.subtree(task_id)
        self.remove(task_id)
        if list_id != old_list:
            for each in moved[1:]:  # parents before their children, siblings in order
                parent = self.where[each][1]
                self.children[(old_list, parent)].remove(each)
                self.add(each, list_id, parent)
        siblings = self.children.setdefault((list_id, parent_id), [])
        index = 0 if previous_id is None else siblings.index(previous_id) + 1
        self.add(task_id, list_id, parent_id, index)

    def shown(self, list_id, parent_id=None):
        order = []
        for task_id in self.children.get((list_id, parent_id), []):
            order += [task_id, *self.shown(list_id, task_id)]
        return order


@pytest.mark.parametrize("seed, room", [(1, None), (2, None), (3, 3), (4, 3)])
def test_random_work_matches_a_model(client, app, auth, alice, monkeypatch, seed, room):
    """Creates, moves (within and across lists, under other tasks, to the start and after a
    sibling, refused ones too) and deletes, 150 of them with a fixed seed; after each, every
    list shows what the model says, in order. With `room`, positions longer than that count as
    too long, so that siblings are laid out afresh again and again (ordering.make_room)."""
    if room:
        monkeypatch.setattr("taskapi.positions.MAX_LENGTH", room)
        monkeypatch.setattr("taskapi.ordering.SHORT", room)
    rng = random.Random(seed)
    list_ids = [inbox_of(client, alice)["id"]] + [make_list(client, alice, n)["id"] for n in "AB"]
    model = Model(list_ids)
    for step in range(150):
        action = rng.choice(["create", "create", "move", "move", "move", "delete"])
        tasks = list(model.where)
        if action == "create" or not tasks:
            parent = rng.choice([None, *tasks])
            if parent is not None and model.depth(parent) >= MAX_DEPTH:
                parent = None
            list_id = model.where[parent][0] if parent else rng.choice(list_ids)
            made = auth.create_task(alice, title=f"t{step}", list_id=list_id, parent_id=parent)
            model.add(made["id"], list_id, parent)
        elif action == "move":
            task_id = rng.choice(tasks)
            list_id = rng.choice(list_ids)
            parents = [None] + [t for t in tasks if model.where[t][0] == list_id]
            parent = rng.choice(parents)
            siblings = [t for t in model.children.get((list_id, parent), []) if t != task_id]
            previous = rng.choice([None, *siblings])
            response = move(
                client, alice, task_id, list_id=list_id, parent_id=parent, previous_id=previous
            )
            own = parent is not None and parent in model.subtree(task_id)
            too_deep = (
                parent is not None and model.depth(parent) + model.height(task_id) > MAX_DEPTH
            )
            if own or too_deep:
                assert field_error(response, "parent_id"), step
                continue
            assert response.status_code == 200, (step, response.json)
            model.move(task_id, list_id, parent, previous)
        else:
            task_id = rng.choice(tasks)
            assert (
                client.delete(f"{alice.tasks_url}/{task_id}", headers=alice.headers).status_code
                == 204
            )
            for each in model.subtree(task_id)[1:]:
                del model.where[each]
            model.remove(task_id)
            del model.where[task_id]
        for list_id in list_ids:
            url = f"{alice.tasks_url}?list_id={list_id}&sort=position&page_size=500"
            assert [
                task["id"] for task in client.get(url, headers=alice.headers).json
            ] == model.shown(list_id), step
        check_paths(app)


def test_many_moves_to_one_place_lay_the_siblings_out_afresh(client, auth, alice, tree):
    """Always right after a (which has subtasks): positions there run out, and the siblings
    around that place get short ones again, their subtasks with them, everything in order; the
    last moves come from another list, with a subtask of their own. Siblings away from that
    place (b, c) are not written."""
    inbox, work = tree["inbox"]["id"], tree["work"]["id"]
    untouched = {name: tree[name]["updated_at"] for name in ("b", "c")}
    expected = ["a", "a1", "a2", "a2x", "b", "c"]
    for number in range(240):
        from_work = number >= 230
        made = auth.create_task(alice, title=f"n{number}", list_id=work if from_work else inbox)
        if from_work:
            auth.create_task(alice, title=f"n{number} child", parent_id=made["id"])
        response = move(client, alice, made["id"], list_id=inbox, previous_id=tree["a"]["id"])
        assert response.status_code == 200, response.json
        moved = [f"n{number}", *([f"n{number} child"] if from_work else [])]
        expected[4:4] = moved
    assert shown(client, alice, inbox) == expected
    assert shown(client, alice, work) == []
    listed = client.get(f"{alice.tasks_url}?list_id={inbox}&page_size=500", headers=alice.headers)
    assert max(len(task["position"]) for task in listed.json) <= 40
    for name, updated_at in untouched.items():
        url = f"{alice.tasks_url}/{tree[name]['id']}"
        assert client.get(url, headers=alice.headers).json["updated_at"] == updated_at, name
    assert {found["name"]: found["task_count"] for found in get_lists(client, alice)} == {
        "Inbox": len(expected),
        "Work": 0,
    }


def test_a_re_layout_never_takes_a_sibling_for_the_moved_task(
    client, app, auth, alice, monkeypatch
):
    """y v z t (positions Zy ZyV Zz a0), then t moved after v where positions of two
    characters at most are allowed: z is laid out afresh at a0, t's old position, and t's own
    move must not take z (and its subtask) along."""
    t, z, y, v = (auth.create_task(alice, title=title) for title in "tzyv")
    move(client, alice, z["id"])
    move(client, alice, y["id"])
    move(client, alice, v["id"], previous_id=y["id"])
    auth.create_task(alice, title="z1", parent_id=z["id"])
    monkeypatch.setattr("taskapi.positions.MAX_LENGTH", 2)
    assert move(client, alice, t["id"], previous_id=v["id"]).status_code == 200
    assert shown(client, alice, inbox_of(client, alice)["id"]) == ["y", "v", "t", "z", "z1"]
    check_paths(app)
