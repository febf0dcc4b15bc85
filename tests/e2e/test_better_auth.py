"""taskapi with the tokens of a real Better Auth server (better_auth/server.mjs, JWT plugin on)."""

import base64
import json
import socket
import subprocess
import threading
import time
from pathlib import Path

import jwt
import pytest
import requests

from taskapi import create_app
from taskapi.db import init_db
from taskapi.edge import create_server

from ..conftest import SECRET, bind_free_port

SERVER = Path(__file__).parent / "better_auth" / "server.mjs"


def free_port():
    listener, port = bind_free_port(lambda port: socket.create_server(("127.0.0.1", port)))
    listener.close()
    return port


def wait_until_serving(process, url, log):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, f"Better Auth exited:\n{log.read_text()}"
        try:
            if requests.get(f"{url}/api/auth/ok", timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    pytest.fail(f"Better Auth did not start within 30 s:\n{log.read_text()}")


@pytest.fixture(scope="module", params=["EdDSA", "RS256", "ES256", "PS256"])
def better_auth(request, tmp_path_factory):
    """Better Auth signing with the given algorithm, on a SQLite file of its own; its URL."""
    assert (SERVER.parent / "node_modules").exists(), "`make e2e` installs better_auth/ first"
    folder = tmp_path_factory.mktemp("better-auth")
    port = free_port()
    environ = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "PORT": str(port),
        "DATABASE_PATH": str(folder / "auth.db"),
        "BETTER_AUTH_SECRET": SECRET,
        "JWT_ALG": request.param,
    }
    log = folder / "server.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            ["node", SERVER], env=environ, stdout=output, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(process, url, log)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def api(better_auth, tmp_path_factory):
    """taskapi on waitress, configured for that frontend as the README says."""
    app = create_app(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path_factory.mktemp('api')}/taskapi.db",
            "BETTER_AUTH_SECRET": SECRET,
            "BETTER_AUTH_JWKS_URL": f"{better_auth}/api/auth/jwks",
            "JWT_ISSUER": better_auth,
            "JWT_AUDIENCE": better_auth,
        }
    )
    with app.app_context():
        init_db()
    server, port = bind_free_port(lambda port: create_server(app, 4, host="127.0.0.1", port=port))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    server.close()
    thread.join(timeout=5)


def sign_up(better_auth, email):
    """A browser's session with Better Auth after signing up: it holds the session cookie."""
    browser = requests.Session()
    body = {"email": email, "password": "correct horse battery", "name": "Ada"}
    response = browser.post(f"{better_auth}/api/auth/sign-up/email", json=body, timeout=10)
    assert response.status_code == 200, response.text
    return browser, response.json()["user"]


def test_jwt_plugin_token_works_here(better_auth, api, request):
    browser, user = sign_up(better_auth, "ada@example.com")
    token = browser.get(f"{better_auth}/api/auth/token", timeout=10).json()["token"]
    assert jwt.get_unverified_header(token)["alg"] == request.node.callspec.params["better_auth"]
    headers = {"Authorization": f"Bearer {token}"}
    me = requests.get(f"{api}/api/auth/me", headers=headers, timeout=10)
    assert me.status_code == 200, me.text
    assert (me.json()["id"], me.json()["email"], me.json()["name"]) == (
        user["id"],
        "ada@example.com",
        "Ada",
    )
    tasks_url = f"{api}/api/users/{user['id']}/tasks"
    created = requests.post(tasks_url, json={"title": "Signed in elsewhere"}, headers=headers)
    assert created.status_code == 201, created.text
    listed = requests.get(tasks_url, headers=headers, timeout=10)
    assert [task["title"] for task in listed.json()] == ["Signed in elsewhere"]


def test_shared_secret_token_works_in_the_same_run(better_auth, api):
    browser, user = sign_up(better_auth, "grace@example.com")
    token = browser.get(f"{better_auth}/shared-secret-token", timeout=10).json()["token"]
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    me = requests.get(f"{api}/api/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200, me.text
    assert (me.json()["id"], me.json()["email"]) == (user["id"], "grace@example.com")


def test_jwt_plugin_token_with_a_changed_subject_is_refused(better_auth, api):
    browser, _ = sign_up(better_auth, "mallory@example.com")
    token = browser.get(f"{better_auth}/api/auth/token", timeout=10).json()["token"]
    header, payload, signature = token.split(".")
    claims = jwt.decode(token, options={"verify_signature": False})
    changed = base64.urlsafe_b64encode(json.dumps({**claims, "sub": "someone-else"}).encode())
    forged = ".".join([header, changed.decode().rstrip("="), signature])
    response = requests.get(f"{api}/api/auth/me", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401


def test_a_squatter_here_cannot_lock_out_the_owner_who_verified_with_better_auth(better_auth, api):
    """Someone signed up here with the owner's email and never verified it. The owner signs up
    with Better Auth: refused (409) while their email is unproven there too, and let in, with
    the squatter's account, once Better Auth says `emailVerified`; the squatter is out."""
    body = {"email": "owner@example.com", "password": "a squatter's passphrase"}
    squatter = requests.post(f"{api}/api/auth/signup", json=body, timeout=10).json()
    browser, user = sign_up(better_auth, "owner@example.com")
    unproven = browser.get(f"{better_auth}/api/auth/token", timeout=10).json()["token"]
    assert get_me(api, unproven).status_code == 409
    link = browser.get(f"{better_auth}/verification-url?email=owner@example.com").json()["url"]
    browser.get(link, timeout=10)  # the owner opens Better Auth's verification mail
    token = browser.get(f"{better_auth}/api/auth/token", timeout=10).json()["token"]
    assert jwt.decode(token, options={"verify_signature": False})["emailVerified"] is True
    me = get_me(api, token)
    assert me.status_code == 200, me.text
    assert (me.json()["id"], me.json()["email_verified"]) == (user["id"], True)
    assert get_me(api, squatter["access_token"]).status_code == 401


def get_me(api, token):
    return requests.get(f"{api}/api/auth/me", headers={"Authorization": f"Bearer {token}"})
