"""Concurrent clients against a real waitress server: the database decides, nothing breaks."""

import functools
import json
import random
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import requests

from taskapi.db import database
from taskapi.models import Task, User
from taskapi.verification import RESET, create_token, settle_email, take_over

from .test_auth import mint
from .test_dates import check_keys


def in_parallel(count, work):
    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(work, range(count)))


def signup(base, email):
    body = {"email": email, "password": "correct horse"}
    response = requests.post(f"{base}/api/auth/signup", json=body, timeout=30)
    return response


def test_concurrent_signups_with_one_email_give_one_account(live_server, app):
    responses = in_parallel(
        20, lambda n: signup(live_server, "Race@X.io" if n % 2 else "race@x.io")
    )
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [201] + [409] * 19
    with app.app_context():
        assert User.select().where(User.email == "race@x.io").count() == 1


def test_fifty_concurrent_creates_give_fifty_tasks(live_server, app):
    user = signup(live_server, "many@x.io").json()
    url = f"{live_server}/api/users/{user['user']['id']}/tasks"
    headers = {"Authorization": f"Bearer {user['access_token']}"}

    def create(number):
        return requests.post(url, json={"title": f"task {number}"}, headers=headers, timeout=30)

    responses = in_parallel(50, create)
    assert [response.status_code for response in responses] == [201] * 50
    listed = requests.get(url, headers=headers, timeout=30)
    assert json.loads(listed.headers["X-Pagination"])["total"] == 50  # the counter kept up
    assert len({response.json()["id"] for response in responses}) == 50
    with app.app_context():
        assert Task.select().count() == 50


def start_task(base, email):
    user = signup(base, email).json()
    headers = {"Authorization": f"Bearer {user['access_token']}"}
    tasks_url = f"{base}/api/users/{user['user']['id']}/tasks"
    task = requests.post(tasks_url, json={"title": "start"}, headers=headers, timeout=30).json()
    return f"{tasks_url}/{task['id']}", task["id"], headers


def write(url, headers, number):
    body = {"title": f"title {number}", "completed": number % 2 == 0}
    send = requests.put if number % 3 else requests.patch
    return send(url, json=body, headers=headers, timeout=30)


def test_concurrent_writes_to_one_task_leave_one_writers_row(live_server, app):
    url, task_id, headers = start_task(live_server, "writer@x.io")
    responses = in_parallel(40, lambda number: write(url, headers, number))
    assert [response.status_code for response in responses] == [200] * 40
    written = {(r.json()["title"], r.json()["completed"]) for r in responses}
    with app.app_context():
        row = Task.get_by_id(task_id)
    assert (row.title, row.completed) in written
    assert row.description is None


def test_concurrent_writes_and_a_delete_leave_a_tombstone(live_server, app):
    url, task_id, headers = start_task(live_server, "deleter@x.io")

    def write_or_delete(number):
        if number == 20:
            return requests.delete(url, headers=headers, timeout=30)
        return write(url, headers, number)

    statuses = [response.status_code for response in in_parallel(40, write_or_delete)]
    assert statuses[20] == 204
    assert set(statuses) <= {200, 204, 404}
    with app.app_context():
        assert Task.get_by_id(task_id).deleted_at is not None  # a tombstone, whatever came first
    assert requests.get(url, headers=headers, timeout=30).status_code == 404


def patch_at_once(url, headers, etag, title, writers):
    """`writers` PATCHes with If-Match, on connections opened beforehand, let go together.
    The server's threads run in this process: switching between them every 10 µs rather than
    every 5 ms interleaves the requests finely, as many cores would."""
    start = threading.Barrier(writers)

    def patch(number):
        with requests.Session() as session:
            session.get(url, headers=headers, timeout=30)
            start.wait()
            body, if_match = {"title": f"{title} {number}"}, {**headers, "If-Match": etag}
            return session.patch(url, json=body, headers=if_match, timeout=30)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        return in_parallel(writers, patch)
    finally:
        sys.setswitchinterval(interval)


def test_concurrent_writes_with_one_etag_let_exactly_one_through(live_server, app):
    """If-Match is checked again in the UPDATE itself: a write landing between another
    request's check and its UPDATE makes that one 412, not a lost update. Five rounds, as
    one could miss the window by chance."""
    url, task_id, headers = start_task(live_server, "match@x.io")
    for round_ in range(5):
        etag = requests.get(url, headers=headers, timeout=30).headers["ETag"]
        responses = patch_at_once(url, headers, etag, f"round {round_}", writers=24)
        assert sorted(response.status_code for response in responses) == [200] + [412] * 23
    winner = next(response.json() for response in responses if response.status_code == 200)
    with app.app_context():
        assert Task.get_by_id(task_id).title == winner["title"]


def test_racing_refreshes_and_signouts_never_answer_500(live_server):
    """Two tabs refreshing with one token, or a refresh racing a sign-out: each answer is a
    200 or a 401, and the session ends (a reuse is a reuse), never a 500."""
    for round in range(10):
        tokens = signup(live_server, f"tabs{round}@x.io").json()
        body = {"refresh_token": tokens["refresh_token"]}
        headers = {"Authorization": f"Bearer {tokens['access_token']}"}

        def race(number, body=body, headers=headers):
            if number == 2:
                return requests.post(f"{live_server}/api/auth/signout", headers=headers)
            return requests.post(f"{live_server}/api/auth/refresh", json=body, timeout=30)

        answers = in_parallel(3, race)
        assert sorted(answer.status_code for answer in answers[:2]) in ([200, 401], [401, 401])
        assert answers[2].status_code in (204, 401)
        for answer in answers[:2]:
            if answer.status_code == 200:
                refreshed = {"Authorization": f"Bearer {answer.json()['access_token']}"}
                me = requests.get(f"{live_server}/api/auth/me", headers=refreshed)
                assert me.status_code == 401  # a reuse was seen, or signed out: the session ended


def test_first_requests_racing_to_take_over_an_email_all_get_the_account(live_server, app):
    """A frontend user's page fires several requests at once on first sight, and their proven
    email is held by an account nobody verified: every request gets the one new account."""
    me = f"{live_server}/api/auth/me"
    for round in range(5):
        email = f"owner{round}@x.io"
        signup(live_server, email)
        token = mint(sub=f"ba-{round}", email=email, emailVerified=True)
        headers = {"Authorization": f"Bearer {token}"}
        answers = in_parallel(4, lambda n, h=headers: requests.get(me, headers=h, timeout=30))
        assert [answer.status_code for answer in answers] == [200] * 4
        assert {answer.json()["id"] for answer in answers} == {f"ba-{round}"}


def test_a_first_request_that_meets_its_own_takeover_gets_the_account(app):
    """The interleaving the race above hits now and then: a request finds no account by the
    token's id, then, once another request's takeover has committed, finds the email on the new
    account, which is its own: that account, not a 409."""
    client = app.test_client()
    holder = client.post(
        "/api/auth/signup", json={"email": "late@x.io", "password": "correct horse"}
    )
    with app.app_context():
        take_over(User.get_by_id(holder.json["user"]["id"]), "ba-late")  # the other request
        settled = settle_email("ba-late", {"email": "late@x.io"}, email_verified=True)
    assert settled is not None and settled.id == "ba-late"


def test_two_reset_links_used_at_once_give_one_new_password(live_server, app):
    """Two links of one account, confirmed at once: one 204, one 422, never a deadlock (503)."""
    signup(live_server, "links@x.io")
    with app.app_context():
        user_id = User.get(User.email == "links@x.io").id
    for round in range(10):
        with app.app_context():
            links = [create_token(user_id, RESET) for _ in range(2)]

        def confirm(number, links=links, round=round):
            body = {"token": links[number], "new_password": f"passphrase {round} and {number}"}
            return requests.post(f"{live_server}/api/auth/password-reset/confirm", json=body)

        statuses = sorted(answer.status_code for answer in in_parallel(2, confirm))
        assert statuses == [204, 422]


def start_lists_user(server, email):
    """A user of `server` with a session of requests: (session, tasks URL, lists URL)."""
    tokens = signup(server.url, email).json()
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {tokens['access_token']}"
    base = f"{server.url}/api/users/{tokens['user']['id']}"
    return session, f"{base}/tasks", f"{base}/lists"


def shown_ids(session, tasks_url, list_id):
    url = f"{tasks_url}?list_id={list_id}&sort=position&page_size=500"
    return [task["id"] for task in session.get(url, timeout=30).json()]


def test_racing_creates_and_moves_keep_one_total_order(start_server, app):
    """Two server processes, 60 creates and moves at once into one list (fixed seed): every
    answer is a success, no two siblings share a position, and every read shows one order."""
    server = start_server("--workers=2", RATELIMIT_ENABLED="false")
    session, tasks_url, lists_url = start_lists_user(server, "order@x.io")
    inbox = session.get(lists_url, timeout=30).json()[0]["id"]
    ids = [
        session.post(tasks_url, json={"title": f"{n}"}, timeout=30).json()["id"] for n in range(10)
    ]
    rng = random.Random(7)
    plan = [(rng.choice([None, *ids]), rng.choice(ids)) for _ in range(60)]

    def act(number):
        previous, moved = plan[number]
        if number % 3 == 0:
            return session.post(tasks_url, json={"title": f"new {number}"}, timeout=30)
        body = {"previous_id": previous if previous != moved else None}
        return session.post(f"{tasks_url}/{moved}/move", json=body, timeout=30)

    answers = in_parallel(60, act)
    assert {answer.status_code for answer in answers} <= {200, 201}, [a.text for a in answers]
    with app.app_context():
        live = Task.select().where(Task.deleted_at.is_null(), Task.task_list == inbox)
        positions = [task.position for task in live]
    assert len(positions) == 30 and len(set(positions)) == 30
    assert shown_ids(session, tasks_url, inbox) == shown_ids(session, tasks_url, inbox)


def test_racing_moves_never_put_a_task_under_its_own_subtree(start_server, app):
    """A under B and B under A, at once, ten times: one move wins, the other is a 422, and
    the tree never holds a cycle."""
    server = start_server("--workers=2", RATELIMIT_ENABLED="false")
    session, tasks_url, _ = start_lists_user(server, "cycle@x.io")
    a, b = (session.post(tasks_url, json={"title": t}, timeout=30).json()["id"] for t in "ab")
    pairs = [(a, b), (b, a)]

    def move_under(number):
        moved, parent = pairs[number]
        return session.post(f"{tasks_url}/{moved}/move", json={"parent_id": parent}, timeout=30)

    for _ in range(10):
        answers = in_parallel(2, move_under)
        assert sorted(answer.status_code for answer in answers) == [200, 422]
        with app.app_context():
            parents = {task.id: task.parent_id for task in Task.select().where(Task.id.in_([a, b]))}
        assert None in parents.values()  # one of them is still at the top
        for task_id in (a, b):  # both back to the top for the next round
            assert (
                session.post(f"{tasks_url}/{task_id}/move", json={}, timeout=30).status_code == 200
            )


def test_a_subtask_made_while_its_parent_goes_goes_too(start_server, app):
    """Creating a subtask while its parent is deleted: the create is refused (422), or it
    lands first and goes with its parent. Never a live task under a deleted one."""
    server = start_server("--workers=2", RATELIMIT_ENABLED="false")
    session, tasks_url, _ = start_lists_user(server, "orphan@x.io")
    for round in range(10):
        parent = session.post(tasks_url, json={"title": f"parent {round}"}, timeout=30).json()["id"]

        def act(number, parent=parent):
            if number == 0:
                return session.delete(f"{tasks_url}/{parent}", timeout=30)
            return session.post(tasks_url, json={"title": "child", "parent_id": parent}, timeout=30)

        answers = in_parallel(4, act)
        assert answers[0].status_code == 204
        assert {answer.status_code for answer in answers[1:]} <= {201, 422}
        with app.app_context():
            orphans = Task.select().where(Task.parent == parent, Task.deleted_at.is_null())
            assert orphans.count() == 0


def test_bulk_updates_moves_and_deletes_at_once_never_answer_5xx(start_server):
    """Every write of a user that touches several rows waits for the user's lock, so none
    deadlocks with another (PostgreSQL answers a deadlock 503): bulk completes, moves of
    subtrees and deletes of parents, all at once, on two processes (fixed seed)."""
    server = start_server("--workers=2", RATELIMIT_ENABLED="false")
    session, tasks_url, _ = start_lists_user(server, "busy@x.io")
    tops = [
        session.post(tasks_url, json={"title": f"{n}"}, timeout=30).json()["id"] for n in range(8)
    ]
    children = [
        session.post(tasks_url, json={"title": "c", "parent_id": top}, timeout=30).json()["id"]
        for top in tops
        for _ in range(3)
    ]
    rng, every = random.Random(11), tops + children
    plan = [(rng.sample(every, 12), rng.sample(tops, 2), rng.choice(tops)) for _ in range(45)]

    def act(number):
        ids, (moved, previous), deleted = plan[number]
        if number % 3 == 0:
            body = {"ids": ids, "completed": number % 2 == 0}
            return session.patch(tasks_url, json=body, timeout=30)
        if number % 3 == 1:
            body = {"previous_id": previous}
            return session.post(f"{tasks_url}/{moved}/move", json=body, timeout=30)
        return session.delete(f"{tasks_url}/{deleted}", timeout=30)

    answers = in_parallel(45, act)
    assert all(answer.status_code < 500 for answer in answers), [a.text for a in answers]


def test_all_day_writes_racing_a_time_zone_change_keep_their_keys(start_server, app):
    """Writes of all-day tasks at once with changes of the user's time zone, ten rounds on two
    processes: every stored due_key is still the end of its day in the zone the user has."""
    server = start_server("--workers=2", RATELIMIT_ENABLED="false")
    session, tasks_url, _ = start_lists_user(server, "zones@x.io")
    me_url = f"{server.url}/api/auth/me"
    ids = [
        session.post(tasks_url, json={"title": f"{n}"}, timeout=30).json()["id"] for n in range(8)
    ]
    for round in range(10):

        def act(number, round=round):
            if number == 8:
                zone = ("Asia/Tokyo", "America/New_York")[round % 2]
                return session.patch(me_url, json={"time_zone": zone}, timeout=30)
            body = {"due_date": f"2026-12-{number + 1:02d}"}
            return session.patch(f"{tasks_url}/{ids[number]}", json=body, timeout=30)

        assert {answer.status_code for answer in in_parallel(9, act)} == {200}
        check_keys(app)


def complete_by_route(session, url, put_body, number):
    """A completion by one of three routes: PATCH, bulk PATCH, PUT of what was read."""
    if number % 3 == 0:
        return session.patch(url, json={"completed": True}, timeout=30)
    if number % 3 == 1:
        tasks_url, task_id = url.rsplit("/", 1)
        body = {"ids": [int(task_id)], "completed": True}
        return session.patch(tasks_url, json=body, timeout=30)
    return session.put(url, json={**put_body, "completed": True}, timeout=30)


def test_racing_completions_never_complete_one_occurrence_twice(start_server, app):
    """Ten completions at once, by three routes on two processes, five rounds: the ones that
    read the same occurrence move the task on once. Each recorded completion is of another
    occurrence, and the task is due at the occurrence after the last one completed."""
    server = start_server("--workers=2", RATELIMIT_ENABLED="false")
    session, tasks_url, _ = start_lists_user(server, "repeat@x.io")
    weekly = {"rule": "FREQ=WEEKLY;BYDAY=MO", "from": "due"}
    body = {"title": "Team meeting", "due_at": "2030-01-07T09:00:00+00:00", "recurrence": weekly}
    url = f"{tasks_url}/{session.post(tasks_url, json=body, timeout=30).json()['id']}"
    for _ in range(5):
        put_body = {**body, "due_at": session.get(url, timeout=30).json()["due_at"]}
        answers = in_parallel(10, functools.partial(complete_by_route, session, url, put_body))
        assert {answer.status_code for answer in answers} == {200}, [a.text for a in answers]
        done = [row["due_at"] for row in session.get(f"{url}/completions", timeout=30).json()]
        assert len(done) == len(set(done)), done
        task = session.get(url, timeout=30).json()
        next_monday = (datetime.fromisoformat(done[0]) + timedelta(weeks=1)).isoformat()
        assert (task["completed"], task["due_at"]) == (False, next_monday)


def test_completions_waiting_for_one_another_complete_the_occurrence_they_read(start_server, app):
    """Five completions of one occurrence read it, then wait for the user's lock (held here
    until they all wait): the first moves the task on, the others complete nothing. (Five:
    each process has as many threads, so all five read before the lock goes, however the two
    processes share them.)"""
    server = start_server("--workers=2", RATELIMIT_ENABLED="false")
    session, tasks_url, _ = start_lists_user(server, "waiting@x.io")
    weekly = {"rule": "FREQ=WEEKLY;BYDAY=MO", "from": "due"}
    body = {"title": "Team meeting", "due_at": "2030-01-07T09:00:00+00:00", "recurrence": weekly}
    task = session.post(tasks_url, json=body, timeout=30).json()
    url = f"{tasks_url}/{task['id']}"
    with ThreadPoolExecutor(max_workers=5) as pool, app.app_context(), database.atomic():
        User.update(task_count=User.task_count).where(User.id == task["user_id"]).execute()
        answers = [pool.submit(complete_by_route, session, url, body, n % 2) for n in range(5)]
        time.sleep(1.5)  # they read the task and wait for the lock
        assert not any(answer.done() for answer in answers)
    assert {answer.result().status_code for answer in answers} == {200}
    assert session.get(url, timeout=30).json()["due_at"] == "2030-01-14T09:00:00+00:00"
    assert len(session.get(f"{url}/completions", timeout=30).json()) == 1
