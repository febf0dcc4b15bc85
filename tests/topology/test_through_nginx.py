"""The HTTP essentials through nginx (TLS) -> waitress -> PgBouncer -> PostgreSQL."""

import http.client
import re
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import psycopg2
import pytest

from .conftest import PASSWORD, Client

FORGED = {"X-Forwarded-For": "127.0.0.3"}  # another client's address, sent through nginx


def assert_json_error(response, status):
    assert response.status == status
    assert response.headers["content-type"] == "application/json"
    assert response.json["code"] == status
    assert response.json["message"] and response.json["detail"] == response.json["message"]


def test_health_answers_with_a_request_id_from_nginx(client):
    response = client.request("GET", "/health")
    assert response.status == 200
    assert response.json == {"status": "ok", "database": "ok"}
    assert re.fullmatch("[0-9a-f]{32}", response.headers["x-request-id"])


def test_the_clients_request_id_goes_through(client):
    response = client.request("GET", "/health", headers={"X-Request-ID": "checkout-42"})
    assert response.headers["x-request-id"] == "checkout-42"


def test_plain_http_is_redirected_to_https_keeping_the_method(topology):
    url = urlsplit(topology["TOPOLOGY_HTTP_URL"])
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    connection.request("POST", "/api/auth/signin?x=1")
    response = connection.getresponse()
    assert response.status == 308
    assert response.getheader("Location") == "https://127.0.0.1/api/auth/signin?x=1"


def test_signup_then_signin_and_me(client):
    user = client.signup("ada@example.com")
    body = {"email": "ada@example.com", "password": PASSWORD}
    signin = client.request("POST", "/api/auth/signin", body)
    assert signin.status == 200
    me = client.request("GET", "/api/auth/me", token=signin.json["access_token"])
    assert me.status == 200
    assert me.json["id"] == user.id


def test_task_crud(client):
    user = client.signup("grace@example.com")
    created = client.request("POST", user.tasks_url, {"title": "Buy milk"}, user.token)
    assert created.status == 201
    url = created.headers["location"]
    assert url == f"{user.tasks_url}/{created.json['id']}"
    fetched = client.request("GET", url, token=user.token)
    assert (fetched.status, fetched.json) == (200, created.json)
    assert fetched.headers["etag"]
    replaced = client.request("PUT", url, {"title": "Buy oat milk"}, user.token)
    assert (replaced.status, replaced.json["title"]) == (200, "Buy oat milk")
    patched = client.request("PATCH", url, {"completed": True}, user.token)
    assert (patched.status, patched.json["completed"]) == (200, True)
    listed = client.request("GET", user.tasks_url, token=user.token)
    assert (listed.status, listed.json) == (200, [patched.json])
    assert '"total": 1' in listed.headers["x-pagination"]
    assert client.request("DELETE", url, token=user.token).status == 204
    assert_json_error(client.request("GET", url, token=user.token), 404)


def test_timestamps_read_back_in_utc_through_pgbouncer(client, topology):
    # The database's own default zone is not UTC, so a session left in it would shift the times.
    with psycopg2.connect(topology["TOPOLOGY_DIRECT_URL"]) as connection:
        with connection.cursor() as cursor:
            cursor.execute("SHOW timezone")
            assert cursor.fetchone() == ("Asia/Kathmandu",)
    user = client.signup("katherine@example.com")
    before = datetime.now(UTC)
    url = client.request("POST", user.tasks_url, {"title": "t"}, user.token).headers["location"]
    task = client.request("GET", url, token=user.token).json
    after = datetime.now(UTC)
    for field in ("created_at", "updated_at"):
        moment = datetime.fromisoformat(task[field])
        assert moment.utcoffset() == timedelta(0)
        assert before - timedelta(seconds=1) <= moment <= after + timedelta(seconds=1)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/api/nothing/here", 404),
        ("GET", "/api/users/x/tasks", 401),
        ("DELETE", "/health", 405),
    ],
)
def test_errors_of_the_app_stay_json(client, method, path, status):
    assert_json_error(client.request(method, path), status)


def test_body_over_64k_is_refused_by_nginx_in_json(client):
    body = {"email": "big@example.com", "password": PASSWORD, "name": "n" * 70_000}
    response = client.request("POST", "/api/auth/signup", body)
    assert_json_error(response, 413)
    assert response.json["message"] == "The request body is too large."  # nginx's, not the app's
    assert re.fullmatch("[0-9a-f]{32}", response.headers["x-request-id"])


def test_each_client_address_has_its_own_bucket_across_both_processes(topology):
    """Through nginx, the limit counts the address nginx saw, not 127.0.0.1 for everyone and
    not what a client writes into X-Forwarded-For; both processes count together."""
    first, second = (
        Client(topology["TOPOLOGY_URL"], topology["TOPOLOGY_CA"], source)
        for source in ("127.0.0.2", "127.0.0.3")
    )
    incomplete = {"email": "nobody@example.com"}  # refused at once, counted all the same
    statuses = [first.request("POST", "/api/auth/signin", incomplete).status for _ in range(20)]
    assert statuses == [422] * 20  # AUTH_RATE_LIMIT, 20 a minute per address
    over = first.request("POST", "/api/auth/signin", incomplete)
    assert_json_error(over, 429)
    assert int(over.headers["retry-after"]) > 0
    spoofed = first.request("POST", "/api/auth/signin", incomplete, headers=FORGED)
    assert spoofed.status == 429
    assert second.request("POST", "/api/auth/signin", incomplete).status == 422
    with open(topology["TOPOLOGY_ACCESS_LOG"]) as log:
        upstreams = {line.split(" upstream=")[1].split()[0] for line in log if "signin" in line}
    assert len(upstreams) == 2, upstreams


def test_one_search_at_a_time_per_user_through_pgbouncer(client, topology):
    """A user's search waits on a table lock: their next ones are refused by either process,
    and once it ends they search again, every time. The lock lives in the search's transaction:
    a lock of the session would stay behind on the server connection PgBouncer (transaction
    pooling) lent it, and refuse that user's searches for as long as the connection lives."""
    user = client.signup("searcher@example.com")
    search = f"{user.tasks_url}?q=milk"
    with ThreadPoolExecutor(1) as pool:
        with psycopg2.connect(topology["TOPOLOGY_DIRECT_URL"]) as holder:
            holder.cursor().execute("LOCK TABLE tasks IN ACCESS EXCLUSIVE MODE")
            first = pool.submit(client.request, "GET", search, token=user.token)
            time.sleep(0.5)  # the first search is waiting on the lock
            refused = [client.request("GET", search, token=user.token) for _ in range(4)]
            assert not first.done()
        assert first.result().status == 200
    for response in refused:
        assert_json_error(response, 429)
        assert response.headers["retry-after"] == "1"
    assert [client.request("GET", search, token=user.token).status for _ in range(8)] == [200] * 8


def test_searches_among_other_traffic_never_leave_a_user_locked_out(client):
    """A user's searches at once, then among another user's lists, so PgBouncer lends each
    statement whichever server connection is free: afterwards the searcher still searches,
    every time. (Against a lock of the session, it failed six runs of seven.)"""
    searcher, reader = client.signup("busy@example.com"), client.signup("reader@example.com")

    def search(_):
        return client.request("GET", f"{searcher.tasks_url}?q=milk", token=searcher.token).status

    def read(_):
        return client.request("GET", reader.tasks_url, token=reader.token).status

    with ThreadPoolExecutor(8) as pool:  # the user's searches at once, then lists among them
        searches = list(pool.map(search, range(60)))
        statuses = list(pool.map(lambda n: read(n) if n % 2 else search(n), range(240)))
    searches, reads = searches + statuses[::2], statuses[1::2]
    assert set(searches) <= {200, 429} and set(reads) == {200}
    assert [search(n) for n in range(8)] == [200] * 8


FAR_TOO_MANY = (  # nginx's own 429, never the app's
    "Far too many requests with this token; wait for the time in Retry-After, then go on."
)
PAGE = {"Origin": "http://localhost:3000"}  # the default CORS_ORIGINS


@pytest.mark.parametrize("layout", ["users", "alias"])
@pytest.mark.parametrize(("method", "query", "count"), [("POST", "", 900), ("GET", "?q=milk", 360)])
def test_a_tokens_flood_is_refused_by_nginx_in_json(client, method, query, count, layout):
    """Far past the app's limits (twice its window at once), a token's writes or searches are
    refused by nginx itself, before any worker: JSON, Retry-After, the request id, readable by
    the page whose preflight the app allowed. The same token's plain reads go on, and so do
    another user's writes."""
    prefix = {"users": "/api/users/", "alias": "/api/"}[layout]  # the task routes, their alias
    user = client.signup(f"flood-{method.lower()}-{layout}@example.com")
    other = client.signup(f"calm-{method.lower()}-{layout}@example.com")
    tasks = user.tasks_url.replace("/api/users/", prefix)
    body = {} if method == "POST" else None

    def send(headers):
        return client.request(method, tasks + query, body, user.token, headers)

    pages = [PAGE if n % 10 else None for n in range(count)]  # a tenth from no page at all
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(send, pages))
    by_nginx = [
        (page, response)
        for page, response in zip(pages, responses, strict=True)
        if response.status == 429 and response.json["message"] == FAR_TOO_MANY
    ]
    assert len(by_nginx) > count // 10, [response.status for response in responses]
    refused = {page is PAGE: response for page, response in by_nginx}  # the last of each
    for response in refused.values():
        assert_json_error(response, 429)
        assert response.headers["retry-after"] == "1"
        assert re.fullmatch("[0-9a-f]{32}", response.headers["x-request-id"])
    assert refused[True].headers["access-control-allow-origin"] == PAGE["Origin"]
    assert "Retry-After" in refused[True].headers["access-control-expose-headers"]
    assert "access-control-allow-origin" not in refused[False].headers  # no page, no CORS
    assert client.request("GET", tasks, token=user.token).status == 200
    calm = other.tasks_url.replace("/api/users/", prefix)
    assert client.request("POST", calm, {"title": "Calm"}, other.token).status == 201
