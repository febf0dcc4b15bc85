"""Mail through a real SMTP server on loopback: verification and password-reset links, sent
from the outbox off the request path, once, and not lost when a process is killed."""

import logging
import os
import re
import signal
import socket
import time
from datetime import timedelta

import pytest
import requests

from taskapi import delivery, verification
from taskapi.models import EmailToken, Outbox, User, utcnow
from taskapi.tokens import hash_token

from .conftest import get_free_port
from .test_auth import bearer, mint

RESET_URL = "https://app.example.com/account/reset-password"  # long: the link line is over 78
VERIFY_URL = "https://app.example.com/verify"


@pytest.fixture
def app(make_app, smtp_server):
    return make_app(
        SMTP_URL=smtp_server.url, PASSWORD_RESET_URL=RESET_URL, EMAIL_VERIFY_URL=VERIFY_URL
    )


def send_mail(app):
    with app.app_context():
        return delivery.send_pending()


def get_token(message, url):
    """The link's token, as the raw mail shows it: a person copying it needs no MIME decoder."""
    raw = message.as_string()
    assert message["Content-Transfer-Encoding"] == "7bit"
    match = re.search(rf"{re.escape(url)}\?token=([\w-]+)$", raw, re.MULTILINE)
    assert match, message.get_content()
    return match.group(1)


def reset_link(client, app, inbox, email="alice@example.com"):
    assert client.post("/api/auth/password-reset", json={"email": email}).status_code == 202
    send_mail(app)
    return get_token(inbox.messages[-1], RESET_URL)


def test_signup_mails_a_verification_link_that_verifies(client, auth, app, smtp_server):
    alice = auth.signup()
    assert client.get("/api/auth/me", headers=alice.headers).json["email_verified"] is False
    assert send_mail(app) == 1
    [message] = smtp_server.inbox.messages
    assert message["To"] == "alice@example.com"
    token = get_token(message, VERIFY_URL)
    verify = {"token": token}
    assert client.post("/api/auth/verify-email", json=verify).status_code == 401
    response = client.post("/api/auth/verify-email", json=verify, headers=alice.headers)
    assert response.status_code == 204
    assert client.get("/api/auth/me", headers=alice.headers).json["email_verified"] is True
    again = client.post("/api/auth/verify-email", json=verify, headers=alice.headers)
    assert again.status_code == 422 and again.json["errors"]["json"]["token"]


def test_resend_mails_a_new_link_until_verified(client, auth, app, smtp_server):
    alice = auth.signup()
    response = client.post("/api/auth/verify-email/resend", headers=alice.headers)
    assert response.status_code == 202
    assert send_mail(app) == 2
    token = get_token(smtp_server.inbox.messages[-1], VERIFY_URL)
    client.post("/api/auth/verify-email", json={"token": token}, headers=alice.headers)
    client.post("/api/auth/verify-email/resend", headers=alice.headers)
    send_mail(app)
    assert len(smtp_server.inbox.messages) == 2  # verified: nothing more to send


def test_a_link_verifies_only_the_account_it_was_sent_for(client, auth, app, smtp_server):
    """A stranger signed up with Bob's address: Bob, signed in to his own account, clicks the
    link the stranger's sign-up sent him, and the stranger's account stays unverified."""
    auth.signup("stranger@example.com")
    bob = auth.signup("bob@example.com")
    send_mail(app)
    sent_to_stranger = get_token(smtp_server.inbox.messages[0], VERIFY_URL)
    response = client.post(
        "/api/auth/verify-email", json={"token": sent_to_stranger}, headers=bob.headers
    )
    assert response.status_code == 422
    with app.app_context():
        assert not User.get(User.email == "stranger@example.com").email_verified


def test_password_reset_from_the_mail_ends_every_session(client, auth, app, smtp_server):
    alice = auth.signup()
    token = reset_link(client, app, smtp_server.inbox)
    body = {"token": token, "new_password": "a brand new passphrase"}
    assert client.post("/api/auth/password-reset/confirm", json=body).status_code == 204
    assert client.get("/api/auth/me", headers=alice.headers).status_code == 401
    signin = {"email": alice.email, "password": "a brand new passphrase"}
    signed_in = client.post("/api/auth/signin", json=signin)
    assert signed_in.status_code == 200
    assert signed_in.json["user"]["email_verified"] is True  # the link proved the address
    assert client.post("/api/auth/password-reset/confirm", json=body).status_code == 422


def test_reset_answers_the_same_for_an_unknown_email(client, auth, app, smtp_server):
    auth.signup()
    known = client.post("/api/auth/password-reset", json={"email": "alice@example.com"})
    unknown = client.post("/api/auth/password-reset", json={"email": "nobody@example.com"})
    assert (known.status_code, known.json) == (unknown.status_code, unknown.json)
    assert known.status_code == 202
    send_mail(app)
    recipients = [message["To"] for message in smtp_server.inbox.messages]
    assert recipients == ["alice@example.com", "alice@example.com"]  # verification, reset


def test_reset_does_the_same_work_for_an_unknown_email(client, auth, caplog):
    """Same timing by construction: the same statements run whether or not the account exists
    (the sender looks it up later), so no clock can tell the two apart."""
    auth.signup()
    statements = []
    for email in ("alice@example.com", "nobody@example.com"):
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger="peewee"):
            client.post("/api/auth/password-reset", json={"email": email})
        statements.append([record.msg[0] for record in caplog.records if record.name == "peewee"])
    assert statements[0] == statements[1] and statements[0]


def test_reset_mails_nothing_to_an_account_the_frontend_signs_in(client, app, smtp_server):
    """Its password is the frontend's business: a password here would be a second way in."""
    proven = bearer(mint(sub="ba-1", email="ba@example.com", emailVerified=True))
    assert client.get("/api/auth/me", headers=proven).status_code == 200
    assert (
        client.post("/api/auth/password-reset", json={"email": "ba@example.com"}).status_code == 202
    )
    assert send_mail(app) == 1  # the row is done with: nothing to send
    assert smtp_server.inbox.messages == []


def test_reset_token_expires_after_an_hour(client, auth, app, smtp_server):
    auth.signup()
    token = reset_link(client, app, smtp_server.inbox)
    with app.app_context():
        EmailToken.update(expires_at=utcnow() - timedelta(seconds=1)).execute()
    body = {"token": token, "new_password": "a brand new passphrase"}
    response = client.post("/api/auth/password-reset/confirm", json=body)
    assert response.status_code == 422
    assert response.json["errors"]["json"]["token"] == [verification.BAD_LINK]


def test_a_weak_new_password_leaves_the_link_usable(client, auth, app, smtp_server):
    auth.signup()
    token = reset_link(client, app, smtp_server.inbox)
    weak = client.post(
        "/api/auth/password-reset/confirm", json={"token": token, "new_password": "password"}
    )
    assert weak.status_code == 422 and "new_password" in weak.json["errors"]["json"]
    body = {"token": token, "new_password": "a brand new passphrase"}
    assert client.post("/api/auth/password-reset/confirm", json=body).status_code == 204


def test_link_tokens_are_stored_only_as_digests(client, auth, app, smtp_server):
    auth.signup()
    token = reset_link(client, app, smtp_server.inbox)
    with app.app_context():
        stored = [row.token_hash for row in EmailToken.select()]
        assert Outbox.select().count() == 0  # sent rows go
    assert token not in stored
    assert hash_token(token) in stored


def test_reset_requests_are_rate_limited_per_email(make_app, smtp_server):
    client = make_app(
        SMTP_URL=smtp_server.url, RATELIMIT_ENABLED="true", SIGNIN_EMAIL_RATE_LIMIT="2/minute"
    ).test_client()
    codes = [
        client.post("/api/auth/password-reset", json={"email": "x@example.com"}).status_code
        for _ in range(3)
    ]
    assert codes == [202, 202, 429]


def test_a_failing_mail_server_is_tried_again_later(make_app, smtp_server):
    app = make_app(SMTP_URL=f"smtp://127.0.0.1:{get_free_port()}")  # nothing listens there
    app.test_client().post("/api/auth/password-reset", json={"email": "x@example.com"})
    with app.app_context():
        User.create(id="u1", email="x@example.com")
        assert delivery.send_pending() == 0
        [row] = Outbox.select()
    assert row.attempts == 1 and row.send_after > time.time() + 5
    app.config["SMTP_URL"] = smtp_server.url
    with app.app_context():
        Outbox.update(send_after=0).execute()
        assert delivery.send_pending() == 1
    assert smtp_server.inbox.messages[0]["To"] == "x@example.com"


def test_without_smtp_url_mail_goes_to_the_log(make_app, caplog):
    app = make_app(SMTP_URL=None, PASSWORD_RESET_URL=RESET_URL)
    app.test_client().post(
        "/api/auth/signup", json={"email": "log@example.com", "password": "correct horse"}
    )
    with caplog.at_level(logging.INFO, logger="taskapi.mail"):
        send_mail(app)
    [record] = [record for record in caplog.records if record.name == "taskapi.mail"]
    assert "log@example.com" in record.getMessage() and "?token=" in record.getMessage()


# The service as deployed: `python wsgi.py`, its own sender thread, a real SMTP server.


def test_the_server_sends_mail_off_the_request_path(start_server, smtp_server):
    server = start_server(SMTP_URL=smtp_server.url, EMAIL_VERIFY_URL=VERIFY_URL)
    body = {"email": "new@example.com", "password": "correct horse"}
    assert requests.post(f"{server.url}/api/auth/signup", json=body).status_code == 201
    [message] = smtp_server.inbox.wait_for(1)
    assert message["To"] == "new@example.com" and get_token(message, VERIFY_URL)


def test_a_mail_server_that_never_answers_slows_no_request(start_server):
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, then says nothing
        port = silent.getsockname()[1]
        server = start_server(SMTP_URL=f"smtp://127.0.0.1:{port}")
        started = time.monotonic()
        for n in range(5):
            body = {"email": f"slow{n}@example.com"}
            response = requests.post(f"{server.url}/api/auth/password-reset", json=body)
            assert response.status_code == 202
        assert time.monotonic() - started < 2


def test_mail_accepted_before_a_kill_is_sent_after_a_restart(start_server, smtp_server, app):
    """Killed while sending: the row stays, claimed, and the next process sends it once the
    claim's lease has run out (moved to now here, rather than waited for)."""
    with socket.create_server(("127.0.0.1", 0)) as silent:  # takes the connection, never answers
        server = start_server(SMTP_URL=f"smtp://127.0.0.1:{silent.getsockname()[1]}")
        body = {"email": "kept@example.com", "password": "correct horse"}
        assert requests.post(f"{server.url}/api/auth/signup", json=body).status_code == 201
        wait_until(lambda: get_outbox(app)[0].attempts == 1)  # claimed, and stuck sending
        os.killpg(server.pid, signal.SIGKILL)  # every process: no chance to send or clean up
        server.wait()
    with app.app_context():
        Outbox.update(send_after=0).execute()
    start_server(SMTP_URL=smtp_server.url)
    [message] = smtp_server.inbox.wait_for(1)
    assert message["To"] == "kept@example.com"
    wait_until(lambda: get_outbox(app) == [])


def get_outbox(app):
    with app.app_context():
        return list(Outbox.select())


def wait_until(condition, timeout=10):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_several_processes_send_each_message_once(start_server, smtp_server, app):
    settings = {"SMTP_URL": smtp_server.url, "RATELIMIT_ENABLED": "false"}
    server = start_server("--workers=2", **settings)
    other = start_server("--workers=2", **settings)  # a second host, same database
    with app.app_context():
        for n in range(30):
            User.create(id=f"u{n}", email=f"user{n}@example.com")
    for n in range(30):
        target = (server, other)[n % 2]
        body = {"email": f"user{n}@example.com"}
        assert requests.post(f"{target.url}/api/auth/password-reset", json=body).status_code == 202
    time.sleep(6)  # past POLL_SECONDS: every process has looked at least once
    messages = smtp_server.inbox.wait_for(30)
    assert sorted(message["To"] for message in messages) == sorted(
        f"user{n}@example.com" for n in range(30)
    )
    assert len(smtp_server.inbox.messages) == 30
