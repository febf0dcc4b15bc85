"""What one user may take: quotas of tasks and lists, per-user limits on writes and searches,
DB_STATEMENT_TIMEOUT, and the purge of what is kept only for a while."""

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import psycopg2
import pytest
import requests

from taskapi import bounds, purge
from taskapi.bounds import TOO_MANY_SEARCHES, TOO_MANY_WRITES
from taskapi.db import database
from taskapi.models import IdempotencyKey, RateLimit, Task, TaskList, utcnow

from .conftest import AuthActions, inbox_rows


def signed_up(app, email="heavy@example.com"):
    client = app.test_client()
    return client, AuthActions(client).signup(email)


def sign_up_on(server, email):
    """A user signed up through a running server: their id, tasks URL and bearer headers."""
    body = {"email": email, "password": "correct horse"}
    user = requests.post(f"{server.url}/api/auth/signup", json=body).json()
    user_id = user["user"]["id"]
    headers = {"Authorization": f"Bearer {user['access_token']}"}
    return user_id, f"{server.url}/api/users/{user_id}/tasks", headers


def test_a_user_at_the_task_quota_gets_409_until_one_is_deleted(make_app, caplog):
    app = make_app(TASK_QUOTA="3")
    client, heavy = signed_up(app)
    ids = [AuthActions(client).create_task(heavy)["id"] for _ in range(3)]
    with caplog.at_level(logging.DEBUG, logger="peewee"):
        refused = client.post(heavy.tasks_url, json={"title": "one more"}, headers=heavy.headers)
    queries = [record.getMessage() for record in caplog.records if record.name == "peewee"]
    assert len(queries) == 1 and "SELECT" in queries[0]  # the token's user, and no write
    assert refused.status_code == 409
    assert refused.json["message"] == "An account holds at most 3 tasks; delete some to add more."
    with app.app_context():
        assert Task.select().where(Task.user == heavy.id).count() == 3
    client.delete(f"{heavy.tasks_url}/{ids[0]}", headers=heavy.headers)
    AuthActions(client).create_task(heavy)  # room again: a tombstone does not count
    other = AuthActions(client).signup("other@example.com")
    AuthActions(client).create_task(other)  # the quota is each user's own


def test_a_retry_of_an_acknowledged_create_is_not_refused_at_the_quota(make_app):
    app = make_app(TASK_QUOTA="1")
    client, heavy = signed_up(app)
    headers = {**heavy.headers, "Idempotency-Key": "only-once"}
    first = client.post(heavy.tasks_url, json={"title": "the one"}, headers=headers)
    again = client.post(heavy.tasks_url, json={"title": "the one"}, headers=headers)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json == first.json


def test_a_user_at_the_list_quota_gets_409(make_app):
    app = make_app(LIST_QUOTA="2")  # the inbox and one more
    client, heavy = signed_up(app)
    assert (
        client.post(heavy.lists_url, json={"name": "one"}, headers=heavy.headers).status_code == 201
    )
    refused = client.post(heavy.lists_url, json={"name": "two"}, headers=heavy.headers)
    assert refused.status_code == 409
    assert refused.json["message"] == "An account holds at most 2 lists; delete some to add more."
    with app.app_context():
        assert TaskList.select().where(TaskList.user == heavy.id).count() == 2


def test_racing_creates_never_pass_the_quota(start_server, app):
    """Twelve creates at once, two processes, room for five: five are stored, seven refused."""
    server = start_server("--workers", "2", TASK_QUOTA="5", RATELIMIT_ENABLED="false")
    user_id, url, headers = sign_up_on(server, "r@x.io")
    barrier = threading.Barrier(12)

    def create(number):
        barrier.wait()
        return requests.post(url, json={"title": f"t{number}"}, headers=headers).status_code

    with ThreadPoolExecutor(12) as pool:
        statuses = sorted(pool.map(create, range(12)))
    assert statuses == [201] * 5 + [409] * 7
    with app.app_context():
        assert Task.select().where(Task.user == user_id).count() == 5


def test_writes_past_the_users_limit_get_429_and_reads_go_on(make_app, caplog):
    app = make_app(RATELIMIT_ENABLED="true", WRITE_RATE_LIMIT="3/minute")
    client, heavy = signed_up(app)
    alias = heavy.tasks_url.replace("/api/users/", "/api/")
    for number in range(2):
        AuthActions(client).create_task(heavy, title=f"t{number}")
    assert client.post(alias, json={"title": "t2"}, headers=heavy.headers).status_code == 201
    refused = client.post(alias, json={"title": "t3"}, headers=heavy.headers)
    assert refused.status_code == 429
    assert refused.json["message"] == TOO_MANY_WRITES
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    assert len(client.get(heavy.tasks_url, headers=heavy.headers).json) == 3
    with caplog.at_level(logging.DEBUG, logger="peewee"):
        for _ in range(3):  # refused by what the process remembers, before any query
            refused = client.post(alias, json={"title": "t"}, headers=heavy.headers)
            assert refused.status_code == 429
            assert refused.json["message"] == TOO_MANY_WRITES
    assert [record.getMessage() for record in caplog.records if record.name == "peewee"] == []
    with app.app_context():
        assert RateLimit.get(RateLimit.key.contains(f"writes:{heavy.id}")).hits == 4
    signed_out = client.post("/api/auth/signout", headers=heavy.headers)
    assert signed_out.status_code == 204  # never refused for the write limit
    with app.app_context():
        assert Task.select().where(Task.user == heavy.id).count() == 3
    other = AuthActions(client).signup("other@example.com")
    AuthActions(client).create_task(other)  # each user counts alone


def test_searches_past_the_users_limit_get_429_and_plain_lists_go_on(make_app):
    app = make_app(RATELIMIT_ENABLED="true", SEARCH_RATE_LIMIT="2/minute")
    client, heavy = signed_up(app)
    for _ in range(2):
        found = client.get(heavy.tasks_url, query_string={"q": "x"}, headers=heavy.headers)
        assert found.status_code == 200
    alias = heavy.tasks_url.replace("/api/users/", "/api/")  # both layouts count together
    refused = client.get(alias, query_string={"q": "x"}, headers=heavy.headers)
    assert refused.status_code == 429
    assert refused.json["message"] == TOO_MANY_SEARCHES
    headed = client.head(heavy.tasks_url, query_string={"q": "x"}, headers=heavy.headers)
    assert headed.status_code == 429  # HEAD runs the search as GET does
    assert client.get(heavy.tasks_url, headers=heavy.headers).status_code == 200


def test_a_search_while_the_users_last_runs_in_this_process_is_429_and_not_counted(make_app):
    """The per-process rule, on either database: while this process runs one of the user's
    searches (marked as bounds.begin_search marks it), the next is refused at once, without
    counting against the limit; another user searches on, and so does the user once it ends."""
    app = make_app(RATELIMIT_ENABLED="true", SEARCH_RATE_LIMIT="5/minute")
    client, heavy = signed_up(app)
    other = AuthActions(client).signup("other@example.com")
    bounds.searching.add(heavy.id)  # as if a search of theirs were running
    try:
        refused = client.get(heavy.tasks_url, query_string={"q": "x"}, headers=heavy.headers)
        others = client.get(other.tasks_url, query_string={"q": "x"}, headers=other.headers)
    finally:
        bounds.searching.discard(heavy.id)
    assert refused.status_code == 429
    assert refused.json["message"] == TOO_MANY_SEARCHES
    assert refused.headers["Retry-After"] == "1"
    assert others.status_code == 200
    with app.app_context():
        assert not RateLimit.select().where(RateLimit.key.contains(f"searches:{heavy.id}")).exists()
    found = client.get(heavy.tasks_url, query_string={"q": "x"}, headers=heavy.headers)
    assert found.status_code == 200
    with app.app_context():  # the key looked for above: this search counted
        assert RateLimit.get(RateLimit.key.contains(f"searches:{heavy.id}")).hits == 1


def test_a_users_second_search_at_once_is_429_on_any_server_and_others_search_on(
    start_server, database_url
):
    """A search waits on a table lock another connection holds: the same user's next search
    is refused at once, by this server and by another one on the same database, in either
    layout of the URL; another user's waits its turn; and once the first ends the user
    searches again anywhere."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite lets readers through a writer's lock: nothing holds a search")
    servers = [start_server("--workers", "1") for _ in range(2)]
    users = [sign_up_on(servers[0], email)[1:] for email in ("a@x.io", "b@x.io")]

    def search(user, server, timeout=10, alias=False):
        url, headers = user
        url = url.replace(servers[0].url, server.url)
        if alias:
            url = url.replace("/api/users/", "/api/")
        return requests.get(url, params={"q": "x"}, headers=headers, timeout=timeout)

    with ThreadPoolExecutor(2) as pool:
        with psycopg2.connect(database_url) as holder, holder.cursor() as cursor:
            cursor.execute("LOCK TABLE tasks IN ACCESS EXCLUSIVE MODE")
            first = pool.submit(search, users[0], servers[0])
            time.sleep(0.5)  # the first search is waiting on the lock
            refused = [search(users[0], server, timeout=2) for server in servers]
            refused.append(search(users[0], servers[1], timeout=2, alias=True))
            others = pool.submit(search, users[1], servers[1])
            time.sleep(0.5)
            assert not first.done() and not others.done()
        for answer in refused:
            assert answer.status_code == 429
            assert answer.json()["message"] == TOO_MANY_SEARCHES
            assert answer.headers["Retry-After"] == "1"
        assert (first.result().status_code, others.result().status_code) == (200, 200)
    assert [search(users[0], server).status_code for server in servers] == [200, 200]


def test_the_write_limit_holds_across_processes(start_server):
    """Database-kept counters: two processes count one user's writes together."""
    server = start_server("--workers", "2", WRITE_RATE_LIMIT="5/minute")
    _, url, headers = sign_up_on(server, "w@x.io")
    answers = [requests.post(url, json={"title": "t"}, headers=headers) for _ in range(8)]
    assert [answer.status_code for answer in answers] == [201] * 5 + [429] * 3
    assert all(int(answer.headers["Retry-After"]) > 0 for answer in answers[5:])
    assert len(requests.get(url, headers=headers).json()) == 5


def test_a_statement_past_the_timeout_is_a_503_and_the_service_goes_on(start_server, database_url):
    """A write waits on a lock another connection holds: PostgreSQL stops it after
    DB_STATEMENT_TIMEOUT, the client gets a 503, and the next request is served."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite's lock waits are its busy timeout; its own case is below")
    server = start_server(DB_STATEMENT_TIMEOUT="1", RATELIMIT_ENABLED="false")
    user_id, url, headers = sign_up_on(server, "s@x.io")
    with psycopg2.connect(database_url) as holder, holder.cursor() as cursor:
        cursor.execute("SELECT 1 FROM users WHERE id = %s FOR UPDATE", [user_id])
        started = time.monotonic()
        stopped = requests.post(url, json={"title": "waits"}, headers=headers, timeout=10)
        waited = time.monotonic() - started
    assert stopped.status_code == 503
    assert stopped.json()["message"] == (
        "The request took too long in the database; try again later."
    )
    assert stopped.headers["Retry-After"] == "5"
    assert 1 <= waited < 3
    assert requests.post(url, json={"title": "goes"}, headers=headers).status_code == 201
    assert [task["title"] for task in requests.get(url, headers=headers).json()] == ["goes"]


def test_a_search_past_the_timeout_is_a_503_and_the_user_searches_again(start_server, database_url):
    """The search's transaction (which holds its lock) ends with the stopped statement: the
    connection goes back to the pool ready, and the user's next search is served."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite lets readers through a writer's lock: nothing holds a search")
    server = start_server("--workers", "1", "--threads", "1", DB_STATEMENT_TIMEOUT="1")
    _, url, headers = sign_up_on(server, "t@x.io")
    with psycopg2.connect(database_url) as holder, holder.cursor() as cursor:
        cursor.execute("LOCK TABLE tasks IN ACCESS EXCLUSIVE MODE")
        stopped = requests.get(url, params={"q": "x"}, headers=headers, timeout=10)
    assert stopped.status_code == 503
    assert stopped.headers["Retry-After"] == "5"
    with psycopg2.connect(database_url) as watcher, watcher.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks JOIN pg_database ON pg_database.oid = database "
            "WHERE locktype = 'advisory' AND datname = current_database()"
        )
        assert cursor.fetchone() == (0,)  # the stopped search's lock went with its transaction
    answers = [requests.get(url, params={"q": "x"}, headers=headers) for _ in range(3)]
    assert [answer.status_code for answer in answers] == [200] * 3


def test_sqlite_stops_a_statement_past_the_timeout(make_app, database_url):
    if not database_url.startswith("sqlite"):
        pytest.skip("PostgreSQL's own statement_timeout is tested through a server above")
    app = make_app(DB_STATEMENT_TIMEOUT="1")
    slow = "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 1e7) "
    slow += "SELECT max(x) FROM n"  # seconds of work
    with app.app_context():
        started = time.monotonic()
        with pytest.raises(Exception, match="interrupted"):
            database.execute_sql(slow).fetchone()
        assert 1 <= time.monotonic() - started < 2
        assert database.execute_sql("SELECT 1").fetchone() == (1,)


def expire_everything(users, tag=""):
    """For each user: an idempotency key, a task and a list, each past its keeping, and one of
    each still kept."""
    long_ago, lately = utcnow() - timedelta(days=31), utcnow() - timedelta(hours=1)
    for user in users:
        for name, when in ((f"old{tag}", long_ago), (f"new{tag}", lately)):
            IdempotencyKey.create(
                user=user, idempotency_key=name, request_hash="h", created_at=when
            )
            TaskList.create(user=user, name=name, position="b", deleted_at=when)
        rows = inbox_rows(user, 2)
        for row, when in zip(rows, (long_ago, lately), strict=True):
            Task.insert(**row, deleted_at=when).execute()
    RateLimit.create(key="ended", hits=1, expires_at=time.time() - 1)


def kept(user):
    return (
        sorted(
            key.idempotency_key
            for key in IdempotencyKey.select().where(IdempotencyKey.user == user)
        ),
        Task.select().where(Task.user == user, Task.deleted_at.is_null(False)).count(),
        TaskList.select().where(TaskList.user == user, TaskList.deleted_at.is_null(False)).count(),
    )


def test_the_purge_forgets_what_expired_for_every_user_once_an_hour(app):
    client = app.test_client()
    users = [AuthActions(client).signup(f"u{n}@x.io").id for n in range(2)]
    with app.app_context():
        expire_everything(users)
        assert purge.purge_if_claimed() == 2 * 3 + 1
        assert [kept(user) for user in users] == [(["new"], 1, 1)] * 2
        assert RateLimit.get_or_none(RateLimit.key == "ended") is None
        expire_everything(users, tag="2")
        assert purge.purge_if_claimed() == 0  # this hour's run is done
        assert kept(users[0]) == (["new", "new2", "old2"], 3, 3)


def test_the_purge_runs_in_a_served_process_with_nothing_else_started(start_server, app):
    client = app.test_client()
    user = AuthActions(client).signup("idle@x.io").id
    with app.app_context():
        expire_everything([user])
    start_server("--workers", "2")
    with app.app_context():
        for _ in range(100):
            if kept(user) == (["new"], 1, 1):
                break
            time.sleep(0.1)
        assert kept(user) == (["new"], 1, 1)
