"""Tokens signed by Better Auth's JWT plugin, checked against a JWKS served on loopback."""

import base64
import hashlib
import hmac
import json
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from taskapi.auth import KEYS_UNAVAILABLE
from taskapi.models import User
from taskapi.tokens import (
    JWKS_REFRESH_COOLDOWN_SECONDS,
    JWKS_RETRY_SECONDS,
    JWKS_TIMEOUT_SECONDS,
)

from .conftest import bind_free_port, serving
from .test_auth import bearer, mint, stored_user

FRONTEND = "https://app.example.com"
GENERATE = {
    "EdDSA": ed25519.Ed25519PrivateKey.generate,
    "ES256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "ES512": lambda: ec.generate_private_key(ec.SECP521R1()),
    "RS256": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
    "PS256": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
}


class Key:
    """A signing key as Better Auth's JWT plugin keeps one: the JWK it publishes names its
    `kid` and `alg`, and its tokens carry the frontend's URL as `iss` and `aud`."""

    def __init__(self, alg, kid=None):
        self.alg, self.kid = alg, kid or uuid.uuid4().hex
        self.private = GENERATE[alg]()
        public = jwt.get_algorithm_by_name(alg).to_jwk(self.private.public_key(), as_dict=True)
        self.jwk = {**public, "kid": self.kid, "alg": alg}

    def sign(self, **claims):
        now = int(time.time())
        claims = {
            "sub": "ba-user",
            "email": "ba@example.com",
            "iss": FRONTEND,
            "aud": FRONTEND,
            "iat": now,
            "exp": now + 900,
            **claims,
        }
        present = {name: value for name, value in claims.items() if value is not None}
        return jwt.encode(present, self.private, algorithm=self.alg, headers={"kid": self.kid})


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.server.fetches += 1
        status, body = self.server.answer or (200, {"keys": [key.jwk for key in self.server.keys]})
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body if isinstance(body, bytes) else json.dumps(body).encode())

    def log_message(self, *args):
        pass


class Frontend(ThreadingHTTPServer):
    """The frontend's /api/auth/jwks: publishes `keys` (or gives `answer`), counts fetches."""

    def __init__(self, port, keys):
        super().__init__(("127.0.0.1", port), Handler)
        self.keys, self.fetches, self.answer = keys, 0, None
        self.jwks_url = f"http://127.0.0.1:{port}/api/auth/jwks"


@pytest.fixture(scope="module")
def keys():
    return {alg: Key(alg) for alg in GENERATE}


@pytest.fixture
def frontend(keys):
    server, _ = bind_free_port(lambda port: Frontend(port, [keys["EdDSA"]]))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def app(make_app, frontend):
    """Here the app takes the frontend's tokens, as configured for Better Auth."""
    return make_app(
        BETTER_AUTH_JWKS_URL=frontend.jwks_url, JWT_ISSUER=FRONTEND, JWT_AUDIENCE=FRONTEND
    )


def me(client, token):
    return client.get("/api/auth/me", headers=bearer(token))


def move_clock(monkeypatch, seconds):
    real = time.monotonic
    monkeypatch.setattr(time, "monotonic", lambda: real() + seconds)


def hs256_by_hand(secret, kid):
    """An HS256 token keyed with public material: PyJWT refuses to sign one, an attacker won't."""
    now = int(time.time())
    parts = [
        {"alg": "HS256", "typ": "JWT", "kid": kid},
        {
            "sub": "intruder",
            "email": "x@evil.io",
            "iss": FRONTEND,
            "aud": FRONTEND,
            "iat": now,
            "exp": now + 900,
        },
    ]
    encode = lambda data: base64.urlsafe_b64encode(data).rstrip(b"=")  # noqa: E731
    signing_input = b".".join(encode(json.dumps(part).encode()) for part in parts)
    signature = hmac.new(secret, signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + encode(signature)).decode()


@pytest.mark.parametrize("alg", GENERATE)
def test_better_auth_token_provisions_the_user(client, app, frontend, keys, alg):
    frontend.keys = [keys[alg]]
    response = me(client, keys[alg].sign(sub="ba-1", email="Ada@Example.com", name="Ada"))
    assert response.status_code == 200
    assert (response.json["id"], response.json["email"]) == ("ba-1", "ada@example.com")
    row = stored_user(app, "ba-1")
    assert (row.name, row.password_hash) == ("Ada", None)


def test_better_auth_token_user_manages_tasks(client, keys):
    headers = bearer(keys["EdDSA"].sign(sub="ba-2"))
    created = client.post(
        "/api/users/ba-2/tasks", json={"title": "from Better Auth"}, headers=headers
    )
    assert created.status_code == 201
    listed = client.get("/api/users/ba-2/tasks", headers=headers)
    assert [task["title"] for task in listed.json] == ["from Better Auth"]


@pytest.mark.parametrize(
    "make_token",
    [
        lambda keys: Key("EdDSA", kid=keys["EdDSA"].kid).sign(),  # another key, same kid
        lambda keys: Key("ES256", kid=keys["EdDSA"].kid).sign(),  # ES256 under an EdDSA kid
        lambda keys: keys["EdDSA"].sign(iss="https://evil.example.com"),
        lambda keys: keys["EdDSA"].sign(aud="https://evil.example.com"),
        lambda keys: keys["EdDSA"].sign(aud=None),
        lambda keys: keys["EdDSA"].sign(exp=None),
        lambda keys: keys["EdDSA"].sign(sub=None),
        lambda keys: Key("EdDSA").sign(),  # a kid the frontend never published
    ],
)
def test_bad_better_auth_token_is_401(client, app, keys, make_token):
    response = me(client, make_token(keys))
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.json["detail"] == response.json["message"]
    with app.app_context():
        assert User.select().count() == 0


@pytest.mark.parametrize("aud", [FRONTEND, None])
def test_better_auth_token_claiming_our_issuer_is_still_checked(client, keys, aud):
    """iss=taskapi spares only tokens signed with the shared secret the JWT_ISSUER and
    JWT_AUDIENCE checks; here the user exists, so nothing else would refuse the token."""
    assert me(client, keys["EdDSA"].sign(sub="ba-3")).status_code == 200  # provisions ba-3
    response = me(client, keys["EdDSA"].sign(sub="ba-3", iss="taskapi", aud=aud))
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


def test_expired_better_auth_token_says_so(client, keys):
    response = me(client, keys["EdDSA"].sign(exp=int(time.time()) - 120))
    assert response.status_code == 401
    assert 'error_description="token expired"' in response.headers["WWW-Authenticate"]


def raw_public_key(key):
    return key.private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )


def pem_public_key(key):
    return key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.mark.parametrize(
    ("alg", "public_material"),
    [
        ("RS256", pem_public_key),
        ("EdDSA", pem_public_key),
        ("EdDSA", raw_public_key),
        ("EdDSA", lambda key: json.dumps(key.jwk).encode()),
        ("EdDSA", lambda key: key.jwk["x"].encode()),
    ],
)
def test_hs256_keyed_with_a_published_key_is_401(client, app, frontend, keys, alg, public_material):
    frontend.keys = [keys[alg]]
    response = me(client, hs256_by_hand(public_material(keys[alg]), keys[alg].kid))
    assert response.status_code == 401
    assert stored_user(app, "intruder") is None


def test_alg_none_with_a_published_kid_is_401(client, keys):
    claims = {"sub": "intruder", "email": "x@evil.io", "iss": FRONTEND, "aud": FRONTEND}
    token = jwt.encode(
        {**claims, "exp": int(time.time()) + 900},
        None,
        algorithm="none",
        headers={"kid": keys["EdDSA"].kid},
    )
    assert me(client, token).status_code == 401


def test_asymmetric_token_without_jwks_configured_is_401(make_app, keys):
    client = make_app().test_client()
    for alg in GENERATE:
        assert me(client, keys[alg].sign()).status_code == 401


def test_shared_secret_tokens_still_work_and_never_fetch_keys(client, auth, frontend):
    alice = auth.signup("alice@example.com")
    assert client.get("/api/auth/me", headers=alice.headers).status_code == 200
    token = mint(sub="hs-1", email="hs@example.com", iss=FRONTEND, aud=FRONTEND)
    assert me(client, token).status_code == 200
    assert frontend.fetches == 0


def test_keys_are_fetched_once_and_cached(client, keys, frontend):
    for _ in range(3):
        assert me(client, keys["EdDSA"].sign()).status_code == 200
    assert frontend.fetches == 1


def test_rotated_key_is_fetched_when_its_kid_first_arrives(client, keys, frontend, monkeypatch):
    old, new = keys["EdDSA"], Key("EdDSA")
    assert me(client, old.sign()).status_code == 200
    frontend.keys = [new, old]  # Better Auth keeps publishing the old key for a grace period
    move_clock(monkeypatch, JWKS_REFRESH_COOLDOWN_SECONDS + 1)
    assert me(client, new.sign()).status_code == 200
    assert me(client, old.sign()).status_code == 200
    assert frontend.fetches == 2


def test_unknown_kids_refetch_at_most_once_per_cooldown(client, keys, frontend, monkeypatch):
    assert me(client, keys["EdDSA"].sign()).status_code == 200
    for _ in range(3):
        assert me(client, Key("EdDSA").sign()).status_code == 401
    assert frontend.fetches == 1
    move_clock(monkeypatch, JWKS_REFRESH_COOLDOWN_SECONDS + 1)
    for _ in range(3):
        assert me(client, Key("EdDSA").sign()).status_code == 401
    assert frontend.fetches == 2


def assert_keys_unavailable(response):
    assert response.status_code == 503
    assert response.json["code"] == 503
    assert response.json["detail"] == response.json["message"]
    assert "keys" in response.json["message"]
    assert response.headers["Retry-After"] == str(JWKS_RETRY_SECONDS)


@pytest.mark.parametrize(
    "answer",
    [
        (200, b"<html>502 Bad Gateway</html>"),
        (500, {"message": "Internal Server Error"}),
        (200, {"keys": []}),
    ],
)
def test_jwks_that_cannot_be_read_is_503(client, app, keys, frontend, answer):
    frontend.answer = answer
    assert_keys_unavailable(me(client, keys["EdDSA"].sign()))
    with app.app_context():
        assert User.select().count() == 0


def test_jwks_on_a_closed_port_is_503(make_app, keys):
    listener, port = bind_free_port(lambda port: socket.create_server(("127.0.0.1", port)))
    listener.close()  # nothing listens there any more: connections are refused
    client = make_app(BETTER_AUTH_JWKS_URL=f"http://127.0.0.1:{port}/api/auth/jwks").test_client()
    assert_keys_unavailable(me(client, keys["EdDSA"].sign()))


def test_jwks_that_never_answers_holds_up_one_request_for_the_timeout(make_app, keys):
    """Four requests at once: one waits out the timeout, the others then answer 503 at once
    (PyJWKClient alone would make each wait in turn, twenty seconds for the last)."""
    # Connections complete in the listen backlog, and no request is ever read or answered.
    listener, port = bind_free_port(lambda port: socket.create_server(("127.0.0.1", port)))
    app = make_app(BETTER_AUTH_JWKS_URL=f"http://127.0.0.1:{port}/api/auth/jwks")
    headers = bearer(keys["EdDSA"].sign())

    def get_me(base_url):
        response = requests.get(f"{base_url}/api/auth/me", headers=headers, timeout=60)
        return response.status_code, response.json()["detail"]

    with serving(app) as base_url, ThreadPoolExecutor(4) as pool:
        started = time.monotonic()
        answers = list(pool.map(get_me, [base_url] * 4))
        elapsed = time.monotonic() - started
    listener.close()
    assert answers == [(503, KEYS_UNAVAILABLE)] * 4
    assert JWKS_TIMEOUT_SECONDS <= elapsed < JWKS_TIMEOUT_SECONDS + 3


def test_jwks_back_after_an_outage_is_used_again(client, keys, frontend, monkeypatch):
    frontend.answer = (503, {"message": "deploying"})
    assert_keys_unavailable(me(client, keys["EdDSA"].sign()))
    frontend.answer = None
    assert_keys_unavailable(me(client, keys["EdDSA"].sign()))
    assert frontend.fetches == 1
    move_clock(monkeypatch, JWKS_RETRY_SECONDS + 1)
    assert me(client, keys["EdDSA"].sign()).status_code == 200
    assert frontend.fetches == 2
