"""Sessions: listed, ended, renewed once per refresh token; ended sessions' tokens refused."""

from datetime import timedelta

import jwt
import requests

from taskapi import sessions
from taskapi.models import RefreshToken, Session, utcnow
from taskapi.tokens import hash_token

from .test_auth import bearer, mint, session_of

DEVICE = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0"}


def signin(client, device_name=None, email="alice@example.com", password="correct horse"):
    body = {"email": email, "password": password}
    if device_name:
        body["device_name"] = device_name
    response = client.post("/api/auth/signin", json=body, headers=DEVICE)
    assert response.status_code == 200, response.json
    return response.json


def test_two_devices_list_end_and_refuse_at_once(client, auth):
    auth.signup()
    laptop, phone = signin(client, "laptop"), signin(client)
    listed = client.get("/api/auth/sessions", headers=bearer(laptop["access_token"])).json
    labels = {each["label"]: each for each in listed}
    assert {"laptop", DEVICE["User-Agent"]} < set(labels)  # and the sign-up's
    assert labels["laptop"]["current"] is True and labels[DEVICE["User-Agent"]]["current"] is False
    phone_id = labels[DEVICE["User-Agent"]]["id"]
    url = f"/api/auth/sessions/{phone_id}"
    assert client.delete(url, headers=bearer(laptop["access_token"])).status_code == 204
    response = client.get("/api/auth/me", headers=bearer(phone["access_token"]))
    assert response.status_code == 401
    assert response.json["message"] == sessions.ENDED
    assert client.get("/api/auth/me", headers=bearer(laptop["access_token"])).status_code == 200


def test_a_session_lists_its_times(client, auth):
    alice = auth.signup()
    [listed] = client.get("/api/auth/sessions", headers=alice.headers).json
    assert set(listed) == {"id", "label", "created_at", "last_used_at", "expires_at", "current"}
    assert listed["id"] == session_of(alice)


def test_another_users_session_is_404(client, auth):
    alice, bob = auth.signup("alice@example.com"), auth.signup("bob@example.com")
    url = f"/api/auth/sessions/{session_of(bob)}"
    assert client.delete(url, headers=alice.headers).status_code == 404
    assert client.get("/api/auth/me", headers=bob.headers).status_code == 200


def test_signout_ends_the_current_session_only(client, auth):
    alice = auth.signup()
    other = signin(client)
    assert client.post("/api/auth/signout", headers=alice.headers).status_code == 204
    assert client.get("/api/auth/me", headers=alice.headers).status_code == 401
    assert client.get("/api/auth/me", headers=bearer(other["access_token"])).status_code == 200


def test_password_change_ends_every_other_session(client, auth):
    alice = auth.signup()
    other = signin(client)
    body = {"current_password": "correct horse", "new_password": "battery staple mountain"}
    assert client.post("/api/auth/password", json=body, headers=alice.headers).status_code == 204
    assert client.get("/api/auth/me", headers=alice.headers).status_code == 200
    assert client.get("/api/auth/me", headers=bearer(other["access_token"])).status_code == 401
    refreshed = client.post("/api/auth/refresh", json={"refresh_token": other["refresh_token"]})
    assert refreshed.status_code == 401


def test_refresh_works_once_and_a_replay_ends_the_session(client, auth, app):
    auth.signup()
    first = signin(client)
    assert first["refresh_expires_in"] == 30 * 86400
    renewed = client.post("/api/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert renewed.status_code == 200
    assert set(renewed.json) >= {"access_token", "refresh_token", "expires_in", "user"}
    new = bearer(renewed.json["access_token"])
    assert client.get("/api/auth/me", headers=new).status_code == 200
    replay = client.post("/api/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert replay.status_code == 401
    assert client.get("/api/auth/me", headers=new).status_code == 401  # the thief is out too
    again = client.post("/api/auth/refresh", json={"refresh_token": renewed.json["refresh_token"]})
    assert again.status_code == 401
    with app.app_context():
        assert Session.select().count() == 1  # the sign-up's: the refreshed one has ended


def test_refresh_tokens_are_stored_only_as_digests(client, auth, app):
    auth.signup()
    token = signin(client)["refresh_token"]
    with app.app_context():
        stored = [row.token_hash for row in RefreshToken.select()]
    assert token not in stored and hash_token(token) in stored


def test_unknown_refresh_token_is_401(client):
    response = client.post("/api/auth/refresh", json={"refresh_token": "not-a-token"})
    assert response.status_code == 401
    assert response.json["message"] == sessions.REFRESH_REFUSED


def test_an_expired_session_is_refused(client, auth, app):
    alice = auth.signup()
    with app.app_context():
        Session.update(expires_at=utcnow() - timedelta(seconds=1)).execute()
    assert client.get("/api/auth/me", headers=alice.headers).status_code == 401


def test_last_used_at_is_kept_to_the_minute(client, auth, app):
    alice = auth.signup()
    hour_ago = utcnow() - timedelta(hours=1)
    with app.app_context():
        Session.update(last_used_at=hour_ago).execute()
    client.get("/api/auth/me", headers=alice.headers)
    [listed] = client.get("/api/auth/sessions", headers=alice.headers).json
    assert listed["last_used_at"] > (utcnow() - timedelta(minutes=1)).isoformat()


def test_own_token_without_a_session_is_refused(client, auth):
    """Tokens from before sessions existed name none: their users sign in once more."""
    alice = auth.signup()
    token = mint(iss="taskapi", sub=alice.id, email=alice.email)
    assert client.get("/api/auth/me", headers=bearer(token)).status_code == 401


def test_frontend_tokens_are_not_sessions_and_keep_working(client):
    token = bearer(mint(sub="fe-1", email="fe@example.com"))
    assert client.get("/api/auth/me", headers=token).status_code == 200
    assert client.get("/api/auth/sessions", headers=token).json == []
    assert client.post("/api/auth/signout", headers=token).status_code == 204
    assert client.get("/api/auth/me", headers=token).status_code == 200


def test_an_ended_session_is_refused_by_every_process_at_once(start_server, app):
    """Two worker processes: the session ends through one, and no request to either passes."""
    server = start_server("--workers=2")
    body = {"email": "two@example.com", "password": "correct horse"}
    token = requests.post(f"{server.url}/api/auth/signup", json=body).json()["access_token"]
    headers = bearer(token)
    assert all(
        requests.get(f"{server.url}/api/auth/me", headers=headers).status_code == 200
        for _ in range(10)
    )
    requests.post(f"{server.url}/api/auth/signout", headers=headers)
    codes = {
        requests.get(f"{server.url}/api/auth/me", headers=headers).status_code for _ in range(20)
    }
    assert codes == {401}
    pids = {line["process"] for line in server.log_lines() if line.get("route") == "/api/auth/me"}
    assert len(pids) == 2  # both workers answered


def test_access_tokens_name_their_session(client, auth):
    alice = auth.signup()
    claims = jwt.decode(alice.token, options={"verify_signature": False})
    assert claims["sid"] == session_of(alice) and claims["iss"] == "taskapi"


def test_a_session_id_no_database_can_store_is_404(client, auth):
    alice = auth.signup()
    response = client.delete("/api/auth/sessions/a%00b", headers=alice.headers)
    assert response.status_code == 404


def test_used_refresh_tokens_are_forgotten_after_a_sessions_lifetime(client, auth, app):
    auth.signup()
    first = signin(client)
    second = client.post("/api/auth/refresh", json={"refresh_token": first["refresh_token"]})
    with app.app_context():
        old = hash_token(first["refresh_token"])
        long_ago = utcnow() - timedelta(days=31)
        RefreshToken.update(used_at=long_ago).where(RefreshToken.token_hash == old).execute()
    refresh = {"refresh_token": second.json["refresh_token"]}
    assert client.post("/api/auth/refresh", json=refresh).status_code == 200
    with app.app_context():
        assert RefreshToken.get_or_none(RefreshToken.token_hash == old) is None
        assert RefreshToken.select().count() == 3  # the sign-up's, the second, and the newest
