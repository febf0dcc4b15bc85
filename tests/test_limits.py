import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
import requests

from taskapi.auth import TOO_MANY

from .conftest import serving

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def limited_app(make_app, **overrides):
    settings = {"RATELIMIT_ENABLED": "true", "AUTH_RATE_LIMIT": "100/minute", **overrides}
    return make_app(**settings)


def signin(client, email, password="wrong password", address="10.0.0.1", headers=None):
    body = {"email": email, "password": password}
    environ = {"REMOTE_ADDR": address}
    return client.post("/api/auth/signin", json=body, environ_base=environ, headers=headers)


def assert_too_many(response):
    assert response.status_code == 429
    assert response.json["message"] == response.json["detail"] == TOO_MANY
    assert 0 < int(response.headers["Retry-After"]) <= 60


def test_signin_is_limited_per_email(make_app):
    client = limited_app(make_app, SIGNIN_EMAIL_RATE_LIMIT="3/minute").test_client()
    client.post("/api/auth/signup", json={"email": "v@x.io", "password": "right password"})
    for address in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
        assert signin(client, "v@x.io", address=address).status_code == 401
    assert_too_many(signin(client, "V@x.io", address="10.0.0.4"))
    assert_too_many(signin(client, "v@x.io", "right password", address="10.0.0.5"))
    assert signin(client, "other@x.io").status_code == 401


def test_auth_routes_share_a_limit_per_address(make_app):
    client = limited_app(make_app, AUTH_RATE_LIMIT="3/minute").test_client()
    environ = {"REMOTE_ADDR": "10.0.0.9"}
    for number in range(2):
        body = {"email": f"a{number}@x.io", "password": "12345678"}
        assert client.post("/api/auth/signup", json=body, environ_base=environ).status_code == 201
    assert signin(client, "a0@x.io", address="10.0.0.9").status_code == 401
    assert_too_many(signin(client, "a1@x.io", address="10.0.0.9"))
    body = {"email": "a2@x.io", "password": "12345678"}
    assert_too_many(client.post("/api/auth/signup", json=body, environ_base=environ))
    assert signin(client, "a1@x.io", address="10.0.0.10").status_code == 401


def test_forwarded_for_is_ignored_by_default(make_app):
    client = limited_app(make_app, AUTH_RATE_LIMIT="2/minute").test_client()
    for number in range(2):
        forged = {"X-Forwarded-For": f"192.0.2.{number}"}
        assert signin(client, f"{number}@x.io", headers=forged).status_code == 401
    assert_too_many(signin(client, "2@x.io", headers={"X-Forwarded-For": "192.0.2.99"}))


def test_forwarded_for_counts_behind_trusted_proxies(make_app):
    client = limited_app(make_app, AUTH_RATE_LIMIT="1/minute", TRUSTED_PROXIES="1").test_client()
    for number in range(3):
        headers = {"X-Forwarded-For": f"192.0.2.{number}"}
        assert signin(client, f"{number}@x.io", headers=headers).status_code == 401


def test_forwarded_for_is_trusted_only_from_listed_proxies(make_app):
    app = limited_app(make_app, AUTH_RATE_LIMIT="1/minute", TRUSTED_PROXIES="10.0.0.1, ::1")
    client = app.test_client()
    for number in range(2):
        headers = {"X-Forwarded-For": f"192.0.2.{number}"}
        assert (
            signin(client, f"{number}@x.io", address="10.0.0.1", headers=headers).status_code == 401
        )
    assert signin(client, "x@x.io", address="10.0.0.2", headers=headers).status_code == 401
    assert_too_many(signin(client, "y@x.io", address="10.0.0.2", headers=headers))


def test_limits_are_shared_through_redis(make_app):
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.ConnectionError:
        if os.environ.get("TASKAPI_REQUIRE_REDIS") == "1":
            raise
        pytest.skip(f"no Redis at {REDIS_URL}")
    settings = {"RATELIMIT_STORAGE_URI": REDIS_URL, "SIGNIN_EMAIL_RATE_LIMIT": "2/minute"}
    first, second = (limited_app(make_app, **settings).test_client() for _ in range(2))
    email = f"{uuid.uuid4().hex}@x.io"  # a key of its own on the shared server
    assert signin(first, email).status_code == 401
    assert signin(second, email).status_code == 401
    assert_too_many(signin(first, email))
    assert_too_many(signin(second, email))


def test_a_signin_flood_is_shed_and_leaves_room_for_reads(make_app):
    """One hash at a time, a few waiting: the rest answer 503 at once, and a read is served
    while the admitted sign-ins are still hashing, not after them."""
    app = make_app(BCRYPT_CONCURRENCY="1", BCRYPT_ROUNDS="12")
    body = {"email": "flood@x.io", "password": "right password"}
    user = app.test_client().post("/api/auth/signup", json=body).json
    read_url = f"/api/users/{user['user']['id']}/tasks"
    headers = {"Authorization": f"Bearer {user['access_token']}"}

    def timed(send, *args, **kwargs):
        response = send(*args, timeout=60, **kwargs)
        return response, time.monotonic()

    with serving(app) as base, ThreadPoolExecutor(max_workers=24) as pool:
        signin = (timed, requests.post, f"{base}/api/auth/signin")
        signins = [pool.submit(*signin, json=body) for _ in range(16)]
        time.sleep(0.1)
        read, read_done = timed(requests.get, base + read_url, headers=headers)
        results = [future.result() for future in signins]
    assert read.status_code == 200
    statuses = [response.status_code for response, _ in results]
    assert set(statuses) == {200, 503}
    shed = next(response for response, _ in results if response.status_code == 503)
    assert (shed.headers["Retry-After"], shed.json()["code"]) == ("1", 503)
    # Queued behind the flood it would come after most of them; it comes before the second.
    assert read_done < sorted(done for response, done in results if response.status_code == 200)[1]
