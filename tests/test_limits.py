import os
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor

import bcrypt
import pytest
import redis
import requests

from taskapi.passwords import BCRYPT_NICENESS
from taskapi.ratelimits import BUSY, TOO_MANY, DatabaseStorage, PasswordGate

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


def test_limits_are_on_unless_turned_off(make_app):
    """RATELIMIT_ENABLED not given at all (make_app otherwise turns the limits off)."""
    client = make_app(RATELIMIT_ENABLED=None, AUTH_RATE_LIMIT="2/minute").test_client()
    for number in range(2):
        assert signin(client, f"{number}@x.io").status_code == 401
    assert_too_many(signin(client, "2@x.io"))


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
        body = {"email": f"a{number}@x.io", "password": "correct horse"}
        assert client.post("/api/auth/signup", json=body, environ_base=environ).status_code == 201
    assert signin(client, "a0@x.io", address="10.0.0.9").status_code == 401
    assert_too_many(signin(client, "a1@x.io", address="10.0.0.9"))
    body = {"email": "a2@x.io", "password": "correct horse"}
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


def timed(send, *args, **kwargs):
    response = send(*args, timeout=60, **kwargs)
    return response, time.monotonic()


def flood(make_app, signins, admitted=None):
    """`signins` sign-ins at once against one hash at a time, and a read sent just after
    them: the read's answer, and each sign-in's answer with the time it came."""
    app = make_app(BCRYPT_CONCURRENCY="1", BCRYPT_ROUNDS="12")
    if admitted:
        app.extensions["password_gate"].admitted = threading.BoundedSemaphore(admitted)
    body = {"email": "flood@x.io", "password": "right password"}
    user = app.test_client().post("/api/auth/signup", json=body).json
    read_url = f"/api/users/{user['user']['id']}/tasks"
    headers = {"Authorization": f"Bearer {user['access_token']}"}
    with serving(app) as base:
        threads = threading.active_count()
        with ThreadPoolExecutor(max_workers=signins) as pool:
            started = time.monotonic()
            signin = (timed, requests.post, f"{base}/api/auth/signin")
            results = [pool.submit(*signin, json=body) for _ in range(signins)]
            time.sleep(0.1)
            read = timed(requests.get, base + read_url, headers=headers)
            results = [(response, done - started) for response, done in map(Future.result, results)]
        for _ in range(50):  # the threads lent to the sign-ins go back as they end
            if threading.active_count() <= threads:
                break
            time.sleep(0.1)
        assert threading.active_count() == threads
    return (read[0], read[1] - started), results


def test_a_signin_flood_waits_its_turn_and_leaves_room_for_reads(make_app):
    """Each sign-in waits for the one hash at a time, on a thread lent for it, so a read
    is served while they wait, not after them; those still waiting after WAIT_SECONDS get
    503 with Retry-After."""
    (read, read_done), results = flood(make_app, signins=48)
    assert read.status_code == 200
    signed_in = sorted(done for response, done in results if response.status_code == 200)
    assert read_done < signed_in[1]  # queued behind the flood it would come after all of them
    shed = [(response, done) for response, done in results if response.status_code != 200]
    assert shed, "48 hashes at cost 12 (0.15 s or more each) cannot all fit in the wait"
    for response, done in shed:
        assert (response.status_code, response.headers["Retry-After"]) == (503, "1")
        assert response.json()["message"] == BUSY
        assert done >= PasswordGate.WAIT_SECONDS  # it waited for a turn, then gave up
    assert len(signed_in) + len(shed) == 48


def test_password_requests_past_the_waiting_room_are_refused_at_once(make_app):
    (read, _), results = flood(make_app, signins=8, admitted=2)
    assert read.status_code == 200
    statuses = sorted(response.status_code for response, _ in results)
    assert statuses.count(200) >= 2 and 503 in statuses
    first_signed_in = min(done for response, done in results if response.status_code == 200)
    for response, done in results:
        if response.status_code == 503:
            # Without waiting for a turn: one that had waited would end a whole hash after the
            # first sign-in. (Not "before it": on a busy machine the two may end together.)
            assert done < 1.5 * first_signed_in


def test_the_owners_device_is_not_locked_out_by_a_stranger(make_app):
    client = limited_app(make_app, SIGNIN_EMAIL_RATE_LIMIT="3/minute").test_client()
    body = {"email": "owner@x.io", "password": "right password"}
    device_token = client.post("/api/auth/signup", json=body).json["device_token"]
    for number in range(3):
        assert signin(client, "owner@x.io", address=f"10.0.1.{number}").status_code == 401
    assert_too_many(signin(client, "owner@x.io", "right password", address="10.0.0.5"))
    for _ in range(2):  # each sign-in gives the device a new token, which works in turn
        owner = {**body, "device_token": device_token}
        response = client.post("/api/auth/signin", json=owner)
        assert response.status_code == 200
        device_token = response.json["device_token"]


def test_a_new_password_ends_every_devices_standing(make_app):
    client = limited_app(make_app, SIGNIN_EMAIL_RATE_LIMIT="1/minute").test_client()
    body = {"email": "moved@x.io", "password": "right password"}
    signed_up = client.post("/api/auth/signup", json=body).json
    change = {"current_password": "right password", "new_password": "new password"}
    headers = {"Authorization": f"Bearer {signed_up['access_token']}"}
    assert client.post("/api/auth/password", json=change, headers=headers).status_code == 204
    old_device = {"email": "moved@x.io", "password": "x", "device_token": signed_up["device_token"]}
    statuses = [client.post("/api/auth/signin", json=old_device).status_code for _ in range(2)]
    assert statuses == [401, 429]  # the shared bucket: the old token counts for nothing


@pytest.mark.parametrize("whose", ["other account", "forged", "garbage"])
def test_a_device_token_of_another_account_opens_no_bucket(make_app, whose):
    client = limited_app(make_app, SIGNIN_EMAIL_RATE_LIMIT="2/minute").test_client()
    body = {"email": "other@x.io", "password": "right password"}
    other = client.post("/api/auth/signup", json=body).json["device_token"]
    token = {"other account": other, "forged": other[:-4] + "AAAA", "garbage": "x" * 40}[whose]
    attempt = {"email": "victim@x.io", "password": "guess", "device_token": token}
    statuses = [client.post("/api/auth/signin", json=attempt).status_code for _ in range(3)]
    assert statuses == [401, 401, 429]


def test_a_device_has_a_limit_of_its_own(make_app):
    client = limited_app(make_app, SIGNIN_DEVICE_RATE_LIMIT="2/minute").test_client()
    body = {"email": "d@x.io", "password": "right password"}
    device_token = client.post("/api/auth/signup", json=body).json["device_token"]
    attempt = {"email": "d@x.io", "password": "wrong", "device_token": device_token}
    statuses = [client.post("/api/auth/signin", json=attempt).status_code for _ in range(3)]
    assert statuses == [401, 401, 429]


def test_a_window_counts_from_one_again_once_it_ends(app):
    storage = DatabaseStorage()
    with app.app_context():
        assert [storage.incr("window", expiry=1) for _ in range(3)] == [1, 2, 3]
        time.sleep(1.1)
        assert storage.get("window") == 0
        assert storage.incr("window", expiry=1) == 1


def test_concurrent_hits_on_one_key_each_count(app):
    storage, barrier = DatabaseStorage(), threading.Barrier(16)

    def increment(_):
        with app.app_context():
            barrier.wait()
            return storage.incr("together", expiry=60)

    with ThreadPoolExecutor(max_workers=16) as pool:
        counts = sorted(pool.map(increment, range(16)))
    assert counts == list(range(1, 17))


@pytest.mark.parametrize(
    ("first", "second", "shared"),
    [
        ("::ffff:192.0.2.1", "::ffff:192.0.2.2", False),  # IPv4 clients of a dual-stack socket
        ("2001:db8:1:2::1", "2001:db8:1:2::ffff", True),  # one subscriber's /64
        ("2001:db8:1:2::1", "2001:db8:1:3::1", False),
    ],
)
def test_addresses_count_as_clients_do(make_app, first, second, shared):
    client = limited_app(make_app, AUTH_RATE_LIMIT="1/minute").test_client()
    assert signin(client, "a@x.io", address=first).status_code == 401
    assert (signin(client, "b@x.io", address=second).status_code == 429) is shared


def test_forwarded_for_is_trusted_from_a_listed_network(make_app):
    app = limited_app(make_app, AUTH_RATE_LIMIT="1/minute", TRUSTED_PROXIES="10.1.0.0/16")
    client = app.test_client()
    for number in range(2):
        headers = {"X-Forwarded-For": f"192.0.2.{number}"}
        response = signin(client, f"{number}@x.io", address="10.1.2.3", headers=headers)
        assert response.status_code == 401


def test_bcrypt_runs_on_threads_of_lower_priority_than_the_requests(client, monkeypatch):
    """Under a sign-in flood the reads come first; idle, sign-ins may take every core."""
    checked_on = []
    checkpw = bcrypt.checkpw

    def watched(*args):
        thread = threading.current_thread()
        checked_on.append((thread.name, os.getpriority(os.PRIO_PROCESS, thread.native_id)))
        return checkpw(*args)

    monkeypatch.setattr(bcrypt, "checkpw", watched)
    for email in ("nobody@x.io", "someone@x.io"):
        assert signin(client, email).status_code == 401
    assert [name.startswith("bcrypt") for name, _ in checked_on] == [True, True]
    assert {nice for _, nice in checked_on} == {BCRYPT_NICENESS}
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == 0
