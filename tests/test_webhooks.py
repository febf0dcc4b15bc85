"""Webhooks: the routes, the SSRF rule at creation and at delivery, and signed deliveries to a
real receiver on loopback, retried, once each, also from `python wsgi.py` with two workers and
after a worker is killed."""

import logging
import os
import signal
import socket
import threading
import time

import pytest
import requests

from taskapi import delivery, webhooks
from taskapi.db import database
from taskapi.models import Outbox, Webhook

from .conftest import RECEIVER_SECRET, AuthActions

EVENT = {"id": 7, "title": "Water the plants"}


@pytest.fixture
def app(make_app):
    return make_app(WEBHOOK_ALLOW_PRIVATE="true")


@pytest.fixture
def auth(auth, app):
    """As conftest's, but each sign-up's verification mail is sent (to the log) at once: the
    outbox then holds webhook calls alone."""
    signup = auth.signup

    def signup_and_mail(*args, **kwargs):
        user = signup(*args, **kwargs)
        deliver(app)
        return user

    auth.signup = signup_and_mail
    return auth


def hooks_url(user):
    return f"/api/users/{user.id}/webhooks"


def add_webhook(client, user, url, events=webhooks.EVENTS, **fields):
    body = {"url": url, "events": list(events), "secret": RECEIVER_SECRET, **fields}
    body = {name: value for name, value in body.items() if value is not None}
    response = client.post(hooks_url(user), json=body, headers=user.headers)
    assert response.status_code == 201, response.json
    return response.json


def emit(app, user_id, event="task.created", data=EVENT):
    with app.app_context(), database.atomic():
        webhooks.emit(user_id, event, data)


def deliver(app):
    with app.app_context():
        return delivery.send_pending()


def get_outbox(app):
    with app.app_context():
        return list(Outbox.select().order_by(Outbox.id))


def retry_now(app):
    """Make every row due now, rather than wait for its backoff."""
    with app.app_context():
        Outbox.update(send_after=0).execute()


# The routes.


def test_a_webhook_shows_its_secret_only_when_made(client, auth, receiver):
    alice = auth.signup()
    response = client.post(
        hooks_url(alice),
        json={"url": receiver.url, "events": ["task.updated", "task.created", "task.created"]},
        headers=alice.headers,
    )
    assert response.status_code == 201
    made = response.json
    assert made["events"] == ["task.created", "task.updated"]
    assert len(made["secret"]) >= 32 and made["url"] == receiver.url
    assert response.headers["Location"] == f"{hooks_url(alice)}/{made['id']}"
    [listed] = client.get(hooks_url(alice), headers=alice.headers).json
    one = client.get(response.headers["Location"], headers=alice.headers).json
    assert listed == one == {key: value for key, value in made.items() if key != "secret"}


def test_webhook_routes_answer_under_the_alias_and_only_to_their_user(client, auth, receiver):
    alice, bob = auth.signup(), auth.signup("bob@example.com")
    made = add_webhook(client, alice, receiver.url)
    assert client.get(f"/api/{alice.id}/webhooks", headers=alice.headers).status_code == 200
    assert client.get(hooks_url(alice), headers=bob.headers).status_code == 403
    bobs_view = client.get(f"{hooks_url(bob)}/{made['id']}", headers=bob.headers)
    assert bobs_view.status_code == 404
    deleted = client.delete(f"/api/{alice.id}/webhooks/{made['id']}", headers=alice.headers)
    assert deleted.status_code == 204
    assert client.get(hooks_url(alice), headers=alice.headers).json == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "http://93.184.215.14/", "events": ["task.exploded"]}, "events"),
        ({"url": "http://93.184.215.14/", "events": []}, "events"),
        ({"events": ["task.created"]}, "url"),
        ({"url": "ftp://93.184.215.14/", "events": ["task.created"]}, "url"),
        ({"url": "http://me:pw@93.184.215.14/", "events": ["task.created"]}, "url"),
        ({"url": "http://93.184.215.14/" + "a" * 2048, "events": ["task.created"]}, "url"),
        ({"url": "http://93.184.215.14/a b", "events": ["task.created"]}, "url"),
        ({"url": "http://93.184.215.14:99999/", "events": ["task.created"]}, "url"),
        ({"url": "http://93.184.215.14/", "events": ["task.created"], "secret": "short"}, "secret"),
    ],
)
def test_a_bad_webhook_is_422(client, auth, body, field):
    alice = auth.signup()
    response = client.post(hooks_url(alice), json=body, headers=alice.headers)
    assert response.status_code == 422
    assert list(response.json["errors"]["json"]) == [field]


def test_a_user_has_at_most_ten_webhooks(client, auth):
    alice = auth.signup()
    for _ in range(webhooks.MAX_WEBHOOKS):
        add_webhook(client, alice, "https://93.184.215.14/hook")
    body = {"url": "https://93.184.215.14/hook", "events": ["task.created"]}
    response = client.post(hooks_url(alice), json=body, headers=alice.headers)
    assert response.status_code == 409


# The SSRF rule (OWASP API7).

INTERNAL = [
    "http://127.0.0.1/",
    "http://localhost:8000/hook",
    "http://[::1]/",
    "http://10.0.0.1/",
    "http://172.16.5.4/",
    "http://192.168.1.1/",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:a00:1]/",
    "http://0.0.0.0/",
    "http://2130706433/",
    "http://0x7f.1/",
    "http://127.1/",
    "http://017700000001/",
    "http://100.64.0.1/",
    "http://[64:ff9b::a9fe:a9fe]/",
    "http://[2002:7f00:1::]/",
    "http://[::7f00:1]/",
    "http://[fe80::1]/",
    "http://[fc00::1]/",
    "http://224.0.0.1/",
    "http://[ff02::1]/",
    "http://240.0.0.1/",
    "http://192.0.2.1/",
    "https://LOCALHOST:443/",
]


def post_by_default(make_app, url):
    """POST a webhook to `url` on an app with the default settings."""
    client = make_app().test_client()
    alice = AuthActions(client).signup()
    body = {"url": url, "events": ["task.created"]}
    return client.post(hooks_url(alice), json=body, headers=alice.headers)


@pytest.mark.parametrize("url", INTERNAL)
def test_an_internal_address_is_refused_by_default(make_app, url):
    response = post_by_default(make_app, url)
    assert response.status_code == 422, url
    [message] = response.json["errors"]["json"]["url"]
    assert "internal address" in message and "public addresses only" in message


@pytest.mark.parametrize(
    "url",
    [
        "https://93.184.215.14/hook",
        "http://[2606:4700:4700::1111]:8080/x",
        "http://[64:ff9b::808:808]/",
    ],
)
def test_a_public_address_is_accepted(make_app, url):
    response = post_by_default(make_app, url)
    assert response.status_code == 201, response.json


def test_a_host_that_does_not_resolve_is_refused(client, auth):
    alice = auth.signup()
    body = {"url": "https://hooks.example.invalid/", "events": ["task.created"]}
    response = client.post(hooks_url(alice), json=body, headers=alice.headers)
    assert response.status_code == 422
    assert "cannot be resolved" in response.json["errors"]["json"]["url"][0]


def test_an_internal_address_is_refused_again_at_delivery(make_app, client, auth, receiver, caplog):
    """Stored while WEBHOOK_ALLOW_PRIVATE was on; delivered by a process where it is off."""
    alice = auth.signup()
    add_webhook(client, alice, receiver.url)
    strict = make_app()
    emit(strict, alice.id)
    with caplog.at_level(logging.WARNING, logger="taskapi.delivery"):
        assert deliver(strict) == 0
    assert receiver.tried == []
    [row] = get_outbox(strict)
    assert row.attempts == 1 and row.send_after > time.time() + 10
    assert "127.0.0.1, an internal address" in caplog.text


def test_a_delivery_connects_to_the_address_it_vetted(make_app, receiver, monkeypatch):
    """DNS rebinding: the name is public at creation and when the delivery checks it, and
    127.0.0.1 (where the receiver is) on any later lookup. The delivery connects to the public
    address it checked, which does not answer here, and never reaches the receiver. The
    resolver is patched: it is the one part a test cannot own."""
    strict = make_app()
    client = strict.test_client()
    alice = AuthActions(client).signup()
    lookups, resolve = [], socket.getaddrinfo

    def rebinding(host, port, *args, **kwargs):
        if host != "rebinding.example":
            return resolve(host, port, *args, **kwargs)
        lookups.append(host)
        address = "93.184.215.14" if len(lookups) <= 2 else "127.0.0.1"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    monkeypatch.setattr(webhooks, "TIMEOUT_SECONDS", 1)
    add_webhook(client, alice, f"http://rebinding.example:{receiver.server_address[1]}/")
    deliver(strict)  # the sign-up's mail (to the log: no lookup)
    emit(strict, alice.id)
    assert deliver(strict) == 0
    assert lookups == ["rebinding.example"] * 2 and receiver.tried == []


# Deliveries, in process.


def test_an_event_is_delivered_signed_once(app, client, auth, receiver):
    alice = auth.signup()
    hook = add_webhook(client, alice, receiver.url, secret=None)  # the service makes one
    receiver.secret = hook["secret"]
    emit(app, alice.id, "task.completed")
    assert deliver(app) == 1
    [(delivery_id, event, body)] = receiver.accepted
    assert event == "task.completed"
    assert body == {"id": delivery_id, "event": event, "created_at": body["created_at"]} | {
        "data": EVENT
    }
    path, headers = receiver.requests[0]
    assert path == "/hooks/taskapi?source=test"
    assert headers["Content-Type"] == "application/json"
    assert get_outbox(app) == [] and deliver(app) == 0


def test_a_wrong_secret_fails_the_receivers_check(app, client, auth, receiver):
    alice = auth.signup()
    add_webhook(client, alice, receiver.url, secret="not-the-receivers-secret")
    emit(app, alice.id)
    assert deliver(app) == 0
    assert len(receiver.tried) == 1 and receiver.accepted == []


def test_an_event_goes_only_to_the_users_webhooks_that_take_it(app, client, auth, receiver):
    alice, bob = auth.signup(), auth.signup("bob@example.com")
    add_webhook(client, alice, receiver.url, events=["task.deleted"])
    add_webhook(client, alice, receiver.url, events=["task.created", "task.deleted"])
    add_webhook(client, bob, receiver.url)
    emit(app, alice.id, "task.deleted")
    emit(app, alice.id, "reminder.fired")
    assert deliver(app) == 2
    assert [event for _, event, _ in receiver.accepted] == ["task.deleted", "task.deleted"]
    assert len({delivery_id for delivery_id, _, _ in receiver.accepted}) == 2


def test_an_event_is_queued_with_its_transaction_or_not_at_all(app, client, auth, receiver):
    alice = auth.signup()
    add_webhook(client, alice, receiver.url)
    with app.app_context(), pytest.raises(RuntimeError), database.atomic():
        webhooks.emit(alice.id, "task.created", EVENT)
        raise RuntimeError("the change fails after the event was queued")
    assert get_outbox(app) == []


def test_a_failed_delivery_is_retried_with_the_same_id(app, client, auth, receiver):
    alice = auth.signup()
    add_webhook(client, alice, receiver.url)
    receiver.answers = [500, 302]  # a redirect is not followed: a failure like any other
    emit(app, alice.id)
    assert deliver(app) == 0
    [row] = get_outbox(app)
    assert row.attempts == 1 and 15 < row.send_after - time.time() <= 20
    assert deliver(app) == 0  # not due yet
    retry_now(app)
    assert deliver(app) == 0
    assert get_outbox(app)[0].send_after - time.time() > 35
    retry_now(app)
    assert deliver(app) == 1
    assert len(set(receiver.tried)) == 1 and len(receiver.tried) == 3
    assert [path for path, _ in receiver.requests] == ["/hooks/taskapi?source=test"] * 3
    assert receiver.accepted[0][0] == receiver.tried[0]
    retry_now(app)
    assert deliver(app) == 0 and len(receiver.tried) == 3


def test_a_delivery_is_given_up_after_its_attempts(app, client, auth, receiver):
    alice = auth.signup()
    add_webhook(client, alice, receiver.url)
    receiver.answers = [500] * webhooks.ATTEMPTS
    emit(app, alice.id)
    for _ in range(webhooks.ATTEMPTS):
        retry_now(app)
        deliver(app)
    assert len(receiver.tried) == webhooks.ATTEMPTS and get_outbox(app) == []


def test_deleting_a_webhook_drops_its_pending_deliveries(app, client, auth, receiver):
    alice = auth.signup()
    kept = add_webhook(client, alice, receiver.url)
    dropped = add_webhook(client, alice, receiver.url)
    emit(app, alice.id)
    url = f"{hooks_url(alice)}/{dropped['id']}"
    assert client.delete(url, headers=alice.headers).status_code == 204
    assert client.delete(url, headers=alice.headers).status_code == 404
    assert [row.webhook_id for row in get_outbox(app)] == [kept["id"]]
    with app.app_context():
        assert Webhook.select().count() == 1


# The service as deployed: `python wsgi.py`, a delivery worker in each process.


def start_hooked_server(start_server, client, auth, receiver, *args):
    server = start_server(*args, WEBHOOK_ALLOW_PRIVATE="true")
    alice = auth.signup()
    add_webhook(client, alice, receiver.url)
    return server, alice


def test_two_workers_deliver_every_event_once(start_server, client, auth, app, receiver):
    server, alice = start_hooked_server(start_server, client, auth, receiver, "--workers=2")
    other = start_server("--workers=2", WEBHOOK_ALLOW_PRIVATE="true")  # another host
    for n in range(30):
        emit(app, alice.id, data={"id": n})
    delivered = receiver.wait_for(30)
    time.sleep(delivery.POLL_SECONDS + 1)  # every process has looked again
    assert sorted(body["data"]["id"] for _, _, body in delivered) == list(range(30))
    assert len(receiver.tried) == 30 and len(set(receiver.tried)) == 30
    assert get_outbox(app) == []
    assert server.poll() is None and other.poll() is None


def test_a_slow_receiver_slows_no_request(start_server, client, auth, app, receiver):
    server, alice = start_hooked_server(start_server, client, auth, receiver)
    receiver.stall = True  # takes every delivery's connection and never answers
    headers = alice.headers
    emit(app, alice.id)
    receiver.wait_until_tried()
    started = time.monotonic()
    for n in range(5):
        created = requests.post(
            f"{server.url}/api/users/{alice.id}/tasks", json={"title": f"t{n}"}, headers=headers
        )
        assert created.status_code == 201
        with app.test_request_context():
            webhooks.emit(alice.id, "task.created", {"id": n})  # as the task routes will
    assert time.monotonic() - started < 2
    assert requests.get(f"{server.url}/health").status_code == 200


def test_a_delivery_cut_short_by_a_kill_is_made_after_a_restart(
    start_server, client, auth, app, receiver
):
    """Killed while delivering: the row stays, claimed, and the next process delivers it once
    the lease has run out (moved to now here, rather than waited for), with the same id."""
    server, alice = start_hooked_server(start_server, client, auth, receiver)
    receiver.stall = True
    emit(app, alice.id)
    receiver.wait_until_tried()
    os.killpg(server.pid, signal.SIGKILL)  # every process: no chance to finish or clean up
    server.wait()
    [row] = get_outbox(app)
    assert row.attempts == 1
    receiver.stall = False
    retry_now(app)
    start_server(WEBHOOK_ALLOW_PRIVATE="true")
    [(delivery_id, _, _)] = receiver.wait_for(1)
    assert receiver.tried == [delivery_id, delivery_id]
    deadline = time.monotonic() + 10
    while get_outbox(app):
        assert time.monotonic() < deadline
        time.sleep(0.05)


def drip_forever(listener, stop):
    """A receiver that answers a byte every half second, never ending its headers."""
    connection, _ = listener.accept()
    with connection:
        connection.recv(65536)
        connection.sendall(b"HTTP/1.1 200 OK\r\nX-Drip: ")
        for _ in range(60):  # 30 s: without a deadline, the call would last that long
            if stop.wait(0.5):
                return
            try:
                connection.sendall(b"x")
            except OSError:
                return


def stall_in_the_headers(listener, stop):
    """A receiver that begins a header line, then sends nothing more."""
    connection, _ = listener.accept()
    with connection:
        connection.recv(65536)
        connection.sendall(b"HTTP/1.1 200 OK\r\nX-Stall: ")
        stop.wait(10)


def test_a_call_cut_off_is_never_taken_for_an_answer(monkeypatch):
    """The cut ends the headers early, so http.client reads a whole 200: the call must fail all
    the same, also when the thread that cut it has not finished yet (held here for 0.5 s after
    its shutdown, as a loaded machine may)."""
    monkeypatch.setattr(webhooks, "DEADLINE_SECONDS", 1)
    shutdown = socket.socket.shutdown

    def lingering_shutdown(self, how):
        shutdown(self, how)
        time.sleep(0.5)

    monkeypatch.setattr(socket.socket, "shutdown", lingering_shutdown)
    listener, stop = socket.create_server(("127.0.0.1", 0)), threading.Event()
    threading.Thread(target=stall_in_the_headers, args=(listener, stop), daemon=True).start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/hook"
    try:
        with pytest.raises(delivery.Failed, match="no whole answer within 1 s"):
            webhooks.post(url, b"{}", {}, allow_private=True)
    finally:
        stop.set()
        listener.close()


def test_a_receiver_answering_a_byte_at_a_time_is_cut_off(monkeypatch):
    """Each read gets its byte within the 10 s timeout, so only the deadline ends the call,
    and with it the delivery thread is free for everyone else's deliveries."""
    monkeypatch.setattr(webhooks, "DEADLINE_SECONDS", 2)
    listener, stop = socket.create_server(("127.0.0.1", 0)), threading.Event()
    threading.Thread(target=drip_forever, args=(listener, stop), daemon=True).start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/hook"
    started = time.monotonic()
    try:
        with pytest.raises(Exception):  # noqa: B017 (whichever way http.client sees the cut)
            webhooks.post(url, b"{}", {}, allow_private=True)
        assert time.monotonic() - started < 2 + webhooks.TIMEOUT_SECONDS
    finally:
        stop.set()
        listener.close()
