"""Local accounts: the password policy, LOCAL_ACCOUNTS=false, and who may hold an email."""

import pytest

from taskapi import delivery
from taskapi.models import DeletedUser, Task, User

from .test_auth import bearer, mint, stored_user


@pytest.mark.parametrize(
    "password, reason",
    [
        ("password", "commonly used"),
        ("12345678", "commonly used"),
        ("        ", "repeats"),
        ("qwertyuiop", "commonly used"),
        ("alice2024", "email address or name"),
        ("Wonderland1", "email address or name"),
        ("aliceliddell1865", "email address or name"),
        ("short", "at least 8 characters"),
    ],
)
def test_weak_passwords_get_a_422_that_says_why(client, password, reason):
    body = {"email": "alice@wonderland.org", "password": password, "name": "Alice Liddell"}
    response = client.post("/api/auth/signup", json=body)
    assert response.status_code == 422
    [message] = response.json["errors"]["json"]["password"]
    assert reason in message


def test_minimum_length_is_configurable(make_app):
    client = make_app(PASSWORD_MIN_LENGTH="16").test_client()
    body = {"email": "a@example.com", "password": "quiet violet lamp"}  # 17 characters
    assert client.post("/api/auth/signup", json=body).status_code == 201
    body = {"email": "b@example.com", "password": "quiet violet"}
    response = client.post("/api/auth/signup", json=body)
    assert response.json["errors"]["json"]["password"] == ["Must be at least 16 characters."]


def test_a_weak_new_password_is_refused_on_change(client, auth):
    alice = auth.signup()
    body = {"current_password": "correct horse", "new_password": "alice@example.com"}
    response = client.post("/api/auth/password", json=body, headers=alice.headers)
    assert response.status_code == 422 and "new_password" in response.json["errors"]["json"]


LOCAL_ROUTES = [
    "/api/auth/signup",
    "/api/auth/signin",
    "/api/auth/password",
    "/api/auth/password-reset",
    "/api/auth/password-reset/confirm",
    "/api/auth/verify-email",
    "/api/auth/verify-email/resend",
    "/api/auth/refresh",
    "/api/auth/sessions",
    "/api/auth/signout",
]


def test_local_accounts_off_leaves_no_local_route(make_app):
    app = make_app(LOCAL_ACCOUNTS="false")
    client = app.test_client()
    paths = client.get("/openapi.json").json["paths"]
    for route in LOCAL_ROUTES:
        assert route not in paths
        assert client.post(route, json={}).status_code == 404
    assert not any(rule.rule.startswith(tuple(LOCAL_ROUTES)) for rule in app.url_map.iter_rules())
    token = bearer(mint(sub="fe-1", email="fe@example.com"))
    assert client.get("/api/auth/me", headers=token).status_code == 200


def test_local_accounts_off_refuses_the_tokens_issued_here(make_app):
    """Their sessions can no longer be listed or ended, so they must not outlive the switch."""
    issued = make_app().test_client()
    body = {"email": "local@example.com", "password": "correct horse"}
    token = bearer(issued.post("/api/auth/signup", json=body).json["access_token"])
    client = make_app(LOCAL_ACCOUNTS="false").test_client()
    response = client.get("/api/auth/me", headers=token)
    assert response.status_code == 401
    assert "frontend" in response.json["message"]


# Who holds an email: proof wins over an account nobody verified (verification.py).


def squat(client, app, email="owner@example.com"):
    """A stranger's local account with someone else's email, never verified, with a task."""
    body = {"email": email, "password": "squatter's passphrase"}
    squatter = client.post("/api/auth/signup", json=body).json
    headers = bearer(squatter["access_token"])
    client.post(f"/api/users/{squatter['user']['id']}/tasks", json={"title": "x"}, headers=headers)
    return squatter


def test_a_proven_frontend_user_takes_the_email_from_a_squatter(client, app):
    squatter = squat(client, app)
    owner = bearer(mint(sub="ba-owner", email="owner@example.com", emailVerified=True))
    response = client.get("/api/auth/me", headers=owner)
    assert response.status_code == 200
    assert response.json["id"] == "ba-owner" and response.json["email_verified"] is True
    old = bearer(squatter["access_token"])
    assert client.get("/api/auth/me", headers=old).status_code == 401
    signin = {"email": "owner@example.com", "password": "squatter's passphrase"}
    assert client.post("/api/auth/signin", json=signin).status_code == 401
    with app.app_context():
        assert stored_user(app, squatter["user"]["id"]) is None
        assert DeletedUser.get_or_none(DeletedUser.id == squatter["user"]["id"])
        assert Task.select().where(Task.user == "ba-owner").count() == 1


def test_an_unproven_frontend_email_cannot_take_an_account(client, app):
    squatter = squat(client, app)
    unproven = bearer(mint(sub="ba-other", email="owner@example.com", emailVerified=False))
    assert client.get("/api/auth/me", headers=unproven).status_code == 409
    stringly = bearer(mint(sub="ba-other", email="owner@example.com", emailVerified="true"))
    assert client.get("/api/auth/me", headers=stringly).status_code == 409
    old = bearer(squatter["access_token"])
    assert client.get("/api/auth/me", headers=old).status_code == 200


def test_a_proven_account_is_never_taken_by_another_proof(client, app, smtp_server, make_app):
    app = make_app(SMTP_URL=smtp_server.url)
    client = app.test_client()
    owner = squat(client, app)
    with app.app_context():
        delivery.send_pending()
    token = smtp_server.inbox.messages[0].get_content().split("?token=")[1].split()[0]
    verify = client.post(
        "/api/auth/verify-email", json={"token": token}, headers=bearer(owner["access_token"])
    )
    assert verify.status_code == 204
    other = bearer(mint(sub="ba-other", email="owner@example.com", emailVerified=True))
    assert client.get("/api/auth/me", headers=other).status_code == 409
    assert client.get("/api/auth/me", headers=bearer(owner["access_token"])).status_code == 200


def test_a_verified_frontend_token_marks_its_user_verified(client, app):
    unproven = bearer(mint(sub="ba-1", email="ba@example.com"))
    assert client.get("/api/auth/me", headers=unproven).json["email_verified"] is False
    proven = bearer(mint(sub="ba-1", email="ba@example.com", emailVerified=True))
    assert client.get("/api/auth/me", headers=proven).json["email_verified"] is True
    with app.app_context():
        assert User.get_by_id("ba-1").email_verified is True


def test_a_reset_link_takes_an_email_from_a_frontend_squatter(client, app, smtp_server, make_app):
    """A stranger arrived through the frontend with the owner's email, unverified: the owner's
    reset link makes a new local account, and the stranger's frontend token is refused."""
    app = make_app(SMTP_URL=smtp_server.url)
    client = app.test_client()
    squatter = bearer(mint(sub="ba-squatter", email="owner@example.com"))
    assert client.get("/api/auth/me", headers=squatter).status_code == 200
    client.post("/api/auth/password-reset", json={"email": "owner@example.com"})
    with app.app_context():
        delivery.send_pending()
    token = smtp_server.inbox.messages[0].get_content().split("?token=")[1].split()[0]
    body = {"token": token, "new_password": "the owner's own passphrase"}
    assert client.post("/api/auth/password-reset/confirm", json=body).status_code == 204
    assert client.get("/api/auth/me", headers=squatter).status_code == 401
    signin = {"email": "owner@example.com", "password": "the owner's own passphrase"}
    signed_in = client.post("/api/auth/signin", json=signin)
    assert signed_in.status_code == 200 and signed_in.json["user"]["id"] != "ba-squatter"


def test_a_verified_token_for_another_address_verifies_nothing_here(client, app):
    """The frontend verified a new address; the one stored here stays unproven, so nobody who
    holds the old mailbox can use a reset link on this account."""
    typo = bearer(mint(sub="ba-1", email="alice@gmial.com"))
    assert client.get("/api/auth/me", headers=typo).status_code == 200
    fixed = bearer(mint(sub="ba-1", email="alice@gmail.com", emailVerified=True))
    assert client.get("/api/auth/me", headers=fixed).json["email_verified"] is False
    with app.app_context():
        assert User.get_by_id("ba-1").email_verified is False
