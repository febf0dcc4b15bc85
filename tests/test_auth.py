import base64
import hashlib
import hmac
import json
import re
import time

import bcrypt
import jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taskapi.models import Task, User
from taskapi.tokens import LEEWAY_SECONDS

from .conftest import SECRET


def mint(secret=SECRET, algorithm="HS256", **claims):
    """A token as another party (the frontend, or an attacker) would sign it."""
    now = int(time.time())
    claims = {"iat": now, "exp": now + 900, **claims}
    present = {name: value for name, value in claims.items() if value is not None}
    return jwt.encode(present, secret, algorithm=algorithm)


def session_of(user):
    """The session id a token issued here names, for minting others of the same session."""
    return jwt.decode(user.token, options={"verify_signature": False})["sid"]


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def stored_user(app, user_id):
    with app.app_context():
        return User.get_or_none(User.id == user_id)


def test_signup_returns_user_and_token(client, app):
    body = {"email": "Alice@Example.COM", "password": "correct horse", "name": "Alice"}
    response = client.post("/api/auth/signup", json=body)
    assert response.status_code == 201
    assert response.json["token_type"] == "bearer"
    assert response.json["expires_in"] == 86400
    user = response.json["user"]
    assert user["email"] == "alice@example.com"
    assert user["name"] == "Alice"
    assert user["created_at"].endswith("+00:00")
    row = stored_user(app, user["id"])
    assert row.email == "alice@example.com"
    assert bcrypt.checkpw(b"correct horse", row.password_hash.encode())


def test_signup_token_has_contract_claims(client):
    response = client.post(
        "/api/auth/signup", json={"email": "a@x.io", "password": "correct horse"}
    )
    claims = jwt.decode(response.json["access_token"], SECRET, algorithms=["HS256"])
    assert claims["iss"] == "taskapi"
    assert claims["sub"] == response.json["user"]["id"]
    assert claims["email"] == "a@x.io"
    assert claims["exp"] - claims["iat"] == 86400
    assert "aud" not in claims


def test_signup_duplicate_email_any_case_is_409(client, auth):
    auth.signup("bob@example.com")
    response = client.post(
        "/api/auth/signup", json={"email": "BOB@example.com", "password": "correct horse"}
    )
    assert response.status_code == 409
    assert response.json["message"] == "This email is already registered."


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"password": "correct horse"}, "email"),
        ({"email": "not-an-email", "password": "correct horse"}, "email"),
        ({"email": "a" * 245 + "@example.com", "password": "correct horse"}, "email"),
        ({"email": 42, "password": "correct horse"}, "email"),
        ({"email": "a@x.io"}, "password"),
        ({"email": "a@x.io", "password": "1234567"}, "password"),
        ({"email": "a@x.io", "password": "é" * 37}, "password"),  # 37 characters, 74 bytes
        ({"email": "a@x.io", "password": "abc\x00defgh"}, "password"),
        ({"email": "a@x.io", "password": "correct horse", "name": "n" * 101}, "name"),
        ({"email": "a@x.io", "password": "correct horse", "name": "n" * 100 + " "}, "name"),
        ({"email": "a@x.io", "password": "correct horse", "admin": True}, "admin"),
    ],
)
def test_signup_invalid_input_is_422(client, app, body, field):
    response = client.post("/api/auth/signup", json=body)
    assert response.status_code == 422
    assert field in response.json["errors"]["json"]
    assert response.json["detail"] == response.json["message"]
    with app.app_context():
        assert User.select().count() == 0


def test_password_of_exactly_72_bytes_is_accepted(client, auth):
    password = "éàüöçñîøåæœßðþ" * 2 + "éàüöçñîø"  # 36 characters, 72 bytes of UTF-8
    auth.signup("c@x.io", password)
    response = client.post("/api/auth/signin", json={"email": "c@x.io", "password": password})
    assert response.status_code == 200


def test_signin_returns_a_working_token(client, auth):
    alice = auth.signup("alice@example.com")
    body = {"email": "ALICE@example.com", "password": "correct horse"}
    response = client.post("/api/auth/signin", json=body)
    assert response.status_code == 200
    assert response.json["user"]["id"] == alice.id
    me = client.get("/api/auth/me", headers=bearer(response.json["access_token"]))
    assert me.json == response.json["user"]


def test_signin_wrong_password_and_unknown_email_look_the_same(client, auth):
    auth.signup("alice@example.com")
    wrong = client.post(
        "/api/auth/signin", json={"email": "alice@example.com", "password": "x" * 8}
    )
    unknown = client.post("/api/auth/signin", json={"email": "nobody@x.io", "password": "x" * 8})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json == unknown.json
    assert wrong.json["message"] == "Invalid email or password."
    assert wrong.headers["WWW-Authenticate"] == unknown.headers["WWW-Authenticate"] == "Bearer"


def test_signin_of_provisioned_user_without_password_is_401(client):
    """Even with the password of the hash bcrypt checks in place of the missing one."""
    token = mint(sub="frontend-user", email="f@x.io")
    assert client.get("/api/auth/me", headers=bearer(token)).status_code == 200
    body = {"email": "f@x.io", "password": "no account has this password"}  # auth.get_dummy_hash
    assert client.post("/api/auth/signin", json=body).status_code == 401


def test_me_returns_the_user(client, auth):
    alice = auth.signup("alice@example.com", name="Alice")
    response = client.get("/api/auth/me", headers=alice.headers)
    assert response.status_code == 200
    assert response.json["id"] == alice.id
    fields = {"id", "email", "email_verified", "name", "time_zone", "created_at"}
    assert set(response.json) == fields and response.json["time_zone"] == "UTC"


def test_me_without_token_is_401_with_challenge(client):
    response = client.get("/api/auth/me")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json["code"] == 401


@pytest.mark.parametrize(
    "authorization",
    ["Token abc", "Bearer", "Bearer ", "Basic YWxpY2U6c2VjcmV0", "Bearer not.a.jwt"],
)
def test_bad_authorization_is_401(client, authorization):
    response = client.get("/api/auth/me", headers={"Authorization": authorization})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.json["detail"] == response.json["message"]


def splice(token, other):
    """`token`'s header and claims under `other`'s signature."""
    return token.rsplit(".", 1)[0] + "." + other.rsplit(".", 1)[1]


FORGERIES = {
    "another secret": lambda claims: mint(secret="another-secret-long-enough-0123456", **claims),
    "HS512": lambda claims: mint(algorithm="HS512", **claims),
    "alg none": lambda claims: mint(secret=None, algorithm="none", **claims),
    "no signature": lambda claims: mint(**claims).rsplit(".", 1)[0] + ".",
    "claims changed": lambda claims: splice(mint(**claims), mint(**{**claims, "sub": "other"})),
}


@pytest.mark.parametrize("forge", FORGERIES.values(), ids=FORGERIES)
def test_forged_token_for_an_existing_user_is_401(client, auth, forge):
    """Each token names a real user and would be accepted, but for how it is signed."""
    alice = auth.signup()
    claims = {"iss": "taskapi", "sub": alice.id, "sid": session_of(alice), "email": alice.email}
    assert client.get("/api/auth/me", headers=bearer(mint(**claims))).status_code == 200
    response = client.get("/api/auth/me", headers=bearer(forge(claims)))
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


@pytest.mark.parametrize(
    "claims",
    [
        {"sub": "u", "email": "u@x.io", "exp": None},  # no exp
        {"email": "u@x.io"},  # no user id anywhere
        {"sub": "", "email": "u@x.io"},
        {"user": {"name": "no id"}, "email": "u@x.io"},
    ],
)
def test_token_missing_claims_is_401(client, app, claims):
    response = client.get("/api/auth/me", headers=bearer(mint(**claims)))
    assert response.status_code == 401
    with app.app_context():
        assert User.select().count() == 0


def test_expired_token_says_so(client, auth):
    alice = auth.signup()
    token = mint(iss="taskapi", sub=alice.id, exp=int(time.time()) - 120)
    response = client.get("/api/auth/me", headers=bearer(token))
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == (
        'Bearer error="invalid_token", error_description="token expired"'
    )


def test_token_expired_within_leeway_is_accepted(client, auth):
    alice = auth.signup()
    token = mint(iss="taskapi", sub=alice.id, sid=session_of(alice), exp=int(time.time()) - 30)
    assert client.get("/api/auth/me", headers=bearer(token)).status_code == 200


def test_a_token_accepted_before_still_expires(client, auth):
    """Valid tokens are remembered to save the signature check; never past their expiry."""
    alice = auth.signup()
    expires = int(time.time()) - LEEWAY_SECONDS + 2
    token = mint(iss="taskapi", sub=alice.id, sid=session_of(alice), exp=expires)
    assert client.get("/api/auth/me", headers=bearer(token)).status_code == 200
    time.sleep(2.5)
    response = client.get("/api/auth/me", headers=bearer(token))
    assert response.status_code == 401
    assert response.json["message"] == "The token has expired; sign in again."


@pytest.mark.parametrize(
    "claims",
    [{"sub": "fe-1"}, {"id": "fe-1"}, {"user": {"id": "fe-1"}}],
)
def test_frontend_token_provisions_user(client, app, claims):
    token = mint(email="Front@End.io", name="Fran", **claims)
    response = client.get("/api/auth/me", headers=bearer(token))
    assert response.status_code == 200
    assert response.json["id"] == "fe-1"
    assert response.json["email"] == "front@end.io"
    row = stored_user(app, "fe-1")
    assert row.password_hash is None
    assert row.name == "Fran"


def test_frontend_token_user_can_manage_tasks(client):
    headers = bearer(mint(sub="fe-2", email="fe2@x.io"))
    created = client.post(
        "/api/users/fe-2/tasks", json={"title": "from the frontend"}, headers=headers
    )
    assert created.status_code == 201
    assert (
        client.get("/api/users/fe-2/tasks", headers=headers).json[0]["title"] == "from the frontend"
    )


def test_frontend_token_without_email_for_unknown_user_is_401(client, app):
    response = client.get("/api/auth/me", headers=bearer(mint(sub="fe-3")))
    assert response.status_code == 401
    assert stored_user(app, "fe-3") is None


def test_frontend_token_for_a_registered_email_is_409(client, auth, app):
    auth.signup("taken@x.io")
    response = client.get("/api/auth/me", headers=bearer(mint(sub="fe-4", email="TAKEN@x.io")))
    assert response.status_code == 409
    assert stored_user(app, "fe-4") is None


def test_token_of_deleted_user_is_refused_and_never_reprovisions(client, auth, app):
    alice = auth.signup("alice@example.com")
    auth.create_task(alice)
    with app.app_context():
        User.delete().where(User.id == alice.id).execute()
        assert Task.select().count() == 0  # ON DELETE CASCADE
    response = client.get("/api/auth/me", headers=alice.headers)
    assert response.status_code == 401
    assert stored_user(app, alice.id) is None


def test_jwt_issuer_and_audience_are_checked_when_set(make_app):
    client = make_app(
        JWT_ISSUER="https://app.example.com", JWT_AUDIENCE="https://app.example.com"
    ).test_client()
    good = mint(
        sub="fe-5", email="fe5@x.io", iss="https://app.example.com", aud="https://app.example.com"
    )
    wrong_aud = mint(
        sub="fe-6", email="fe6@x.io", iss="https://app.example.com", aud="https://evil.io"
    )
    wrong_iss = mint(
        sub="fe-7", email="fe7@x.io", iss="https://evil.io", aud="https://app.example.com"
    )
    assert client.get("/api/auth/me", headers=bearer(good)).status_code == 200
    assert client.get("/api/auth/me", headers=bearer(wrong_aud)).status_code == 401
    assert client.get("/api/auth/me", headers=bearer(wrong_iss)).status_code == 401


def test_own_tokens_still_work_with_audience_set(make_app):
    client = make_app(JWT_AUDIENCE="https://app.example.com").test_client()
    body = {"email": "own@x.io", "password": "correct horse"}
    token = client.post("/api/auth/signup", json=body).json["access_token"]
    assert client.get("/api/auth/me", headers=bearer(token)).status_code == 200


def test_changing_the_secret_invalidates_old_tokens(make_app):
    token = (
        make_app()
        .test_client()
        .post("/api/auth/signup", json={"email": "s@x.io", "password": "correct horse"})
        .json["access_token"]
    )
    client = make_app(BETTER_AUTH_SECRET="a-completely-different-secret-0123456789").test_client()
    assert client.get("/api/auth/me", headers=bearer(token)).status_code == 401


# The routes that answer without a token; auth.load_user refuses every other one.
OPEN_ROUTES = {
    "/api/auth/signup",
    "/api/auth/signin",
    "/api/auth/refresh",
    "/api/auth/password-reset",
    "/api/auth/password-reset/confirm",
    "/health",
    "/openapi.json",
    "/docs",
    "/docs/assets/<path:filename>",
    "/api/calendar/<token>.ics",  # the URL is the key (tests/test_calendars.py)
}


def test_every_route_but_the_open_ones_needs_a_token(app, client):
    rules = [rule for rule in app.url_map.iter_rules() if rule.rule not in OPEN_ROUTES]
    assert len(rules) == len(list(app.url_map.iter_rules())) - len(OPEN_ROUTES)
    for rule in rules:
        path = re.sub(r"<[^>]+>", "7", rule.rule)  # user_id 7, task_id 7
        for method in rule.methods - {"OPTIONS"}:
            response = client.open(path, method=method, json={})
            assert response.status_code == 401, (method, rule.rule)
            assert response.headers["WWW-Authenticate"] == "Bearer"


def test_other_users_path_is_403(client, auth):
    alice, bob = auth.signup("alice@example.com"), auth.signup("bob@example.com")
    response = client.get(bob.tasks_url, headers=alice.headers)
    assert response.status_code == 403
    assert response.json["code"] == 403


def test_default_bcrypt_cost_is_12(make_app):
    app = make_app(BCRYPT_ROUNDS=None)
    assert app.config["BCRYPT_ROUNDS"] == 12
    response = app.test_client().post(
        "/api/auth/signup", json={"email": "d@x.io", "password": "correct horse"}
    )
    with app.app_context():
        assert User.get_by_id(response.json["user"]["id"]).password_hash.startswith("$2b$12$")


def test_signin_timing_does_not_reveal_whether_the_email_exists(make_app):
    """A real bcrypt cost, so a skipped hash would show (about ten times faster): the fastest of
    each kind within a factor of 2. The kinds take turns, and the fastest of each is what the
    work costs; a busy machine (the other test files) only ever adds to some of the times."""
    client = make_app(BCRYPT_ROUNDS="9").test_client()
    client.post("/api/auth/signup", json={"email": "known@x.io", "password": "right password"})
    times = {"known@x.io": [], "unknown@x.io": []}
    for _ in range(15):
        for email, taken in times.items():
            started = time.perf_counter()
            response = client.post(
                "/api/auth/signin", json={"email": email, "password": "nope1234"}
            )
            taken.append(time.perf_counter() - started)
            assert response.status_code == 401
    known, unknown = (min(taken) for taken in times.values())
    assert 0.5 < known / unknown < 2


def test_passwords_are_checked_by_bcrypt_checkpw(client, auth, monkeypatch):
    """checkpw compares the hashes in constant time; `hashpw(password, stored) == stored`
    gives the same answers but stops at the first differing byte, a timing difference of
    nanoseconds that no test here can measure. What can be checked is the call: every
    password check (sign-in, password change, account deletion) goes through checkpw."""
    alice, checked, checkpw = auth.signup(password="correct horse"), [], bcrypt.checkpw
    spy = lambda password, stored: checked.append(password) or checkpw(password, stored)  # noqa: E731
    monkeypatch.setattr(bcrypt, "checkpw", spy)
    right, wrong = "correct horse", "not it at all"
    signin = client.post("/api/auth/signin", json={"email": alice.email, "password": right})
    change = {"current_password": wrong, "new_password": "battery staple"}
    changed = client.post("/api/auth/password", json=change, headers=alice.headers)
    url, body = f"/api/users/{alice.id}", {"password": right}
    deleted = client.delete(url, json=body, headers=alice.headers)
    assert (signin.status_code, changed.status_code, deleted.status_code) == (200, 403, 204)
    assert checked == [b"correct horse", b"not it at all", b"correct horse"]


def test_patch_me_changes_the_name(client, auth, app):
    alice = auth.signup(name="Alice")
    response = client.patch("/api/auth/me", json={"name": "  Ada  "}, headers=alice.headers)
    assert (response.status_code, response.json["name"]) == (200, "Ada")
    assert stored_user(app, alice.id).name == "Ada"
    assert (
        client.patch("/api/auth/me", json={"name": None}, headers=alice.headers).json["name"]
        is None
    )


@pytest.mark.parametrize("body", [{}, {"name": "n" * 101}, {"email": "new@x.io"}, {"name": 5}])
def test_patch_me_refuses_other_changes(client, auth, app, body):
    alice = auth.signup(name="Alice")
    assert client.patch("/api/auth/me", json=body, headers=alice.headers).status_code == 422
    assert stored_user(app, alice.id).name == "Alice"


def test_password_change_needs_the_current_one(client, auth):
    alice = auth.signup("alice@example.com", "correct horse")
    wrong = {"current_password": "not it at all", "new_password": "battery staple"}
    assert client.post("/api/auth/password", json=wrong, headers=alice.headers).status_code == 403
    right = {"current_password": "correct horse", "new_password": "battery staple"}
    assert client.post("/api/auth/password", json=right, headers=alice.headers).status_code == 204
    signin = lambda password: client.post(  # noqa: E731
        "/api/auth/signin", json={"email": "alice@example.com", "password": password}
    )
    assert signin("correct horse").status_code == 401
    assert signin("battery staple").status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"current_password": "correct horse", "new_password": "short"},
        {"current_password": "correct horse", "new_password": "é" * 37},
        {"current_password": "x" * 73, "new_password": "battery staple"},
        {"new_password": "battery staple"},
    ],
)
def test_password_change_validates(client, auth, body):
    alice = auth.signup("alice@example.com", "correct horse")
    assert client.post("/api/auth/password", json=body, headers=alice.headers).status_code == 422


def test_provisioned_user_has_no_password_to_change(client):
    headers = bearer(mint(sub="fe-pw", email="fe-pw@x.io"))
    body = {"current_password": "anything at all", "new_password": "battery staple"}
    response = client.post("/api/auth/password", json=body, headers=headers)
    assert response.status_code == 403
    assert "frontend" in response.json["message"]


def test_delete_account_removes_user_and_tasks(client, auth, app):
    alice, bob = auth.signup("alice@example.com"), auth.signup("bob@example.com")
    auth.create_task(alice)
    auth.create_task(bob)
    url = f"/api/users/{alice.id}"
    assert (
        client.delete(url, json={"password": "wrong one"}, headers=alice.headers).status_code == 403
    )
    assert (
        client.delete(url, json={"password": "correct horse"}, headers=bob.headers).status_code
        == 403
    )
    assert (
        client.delete(url, json={"password": "correct horse"}, headers=alice.headers).status_code
        == 204
    )
    assert stored_user(app, alice.id) is None
    with app.app_context():
        assert [task.user_id for task in Task.select()] == [bob.id]
    assert client.get("/api/auth/me", headers=alice.headers).status_code == 401


def test_delete_account_without_its_password_is_422_naming_it(client, auth, app):
    alice = auth.signup()
    response = client.delete(f"/api/users/{alice.id}", json={}, headers=alice.headers)
    assert response.status_code == 422
    assert response.json["errors"] == {"json": {"password": ["Missing data for required field."]}}
    assert stored_user(app, alice.id) is not None


def test_delete_provisioned_account_needs_no_password(client, app):
    headers = bearer(mint(sub="fe-del", email="fe-del@x.io"))
    client.post("/api/users/fe-del/tasks", json={"title": "t"}, headers=headers)
    assert client.delete("/api/users/fe-del", json={}, headers=headers).status_code == 204
    assert stored_user(app, "fe-del") is None


@pytest.mark.parametrize(
    "claims",
    [
        {"exp": "4102444800"},  # a numeric string: PyJWT takes it, a comparison would not
        {"exp": "soon"},
        {"iat": "1700000000"},
        {"nbf": "0"},
        {"sub": "fe\x00nul"},
        {"sub": "fe\ud800surrogate"},
        {"sub": "fe\nnewline"},
    ],
)
def test_malformed_or_overlong_frontend_token_is_401(client, app, claims):
    token = mint(**{"sub": "fe-odd", "email": "fe-odd@x.io", **claims})
    response = client.get("/api/auth/me", headers=bearer(token))
    assert response.status_code == 401
    assert response.json["message"] == "The token is invalid."
    with app.app_context():
        assert User.select().count() == 0


@pytest.mark.parametrize("issued", [-5, 60], ids=["before", "after"])
def test_a_deleted_frontend_account_stays_deleted(client, app, issued):
    """Whenever its token was issued: Better Auth mints new ones from the same session."""
    headers = bearer(mint(sub="fe-gone", email="fe-gone@x.io"))
    client.post("/api/users/fe-gone/tasks", json={"title": "t"}, headers=headers)
    assert client.delete("/api/users/fe-gone", json={}, headers=headers).status_code == 204
    later = bearer(mint(sub="fe-gone", email="fe-gone@x.io", iat=int(time.time()) + issued))
    response = client.get("/api/users/fe-gone/tasks", headers=later)
    assert response.status_code == 401
    assert response.json["message"] == "The token's account no longer exists."
    assert stored_user(app, "fe-gone") is None


def test_a_token_that_lives_too_long_says_so(client):
    token = mint(sub="fe-long", email="fe-long@x.io", exp=int(time.time()) + 2 * 86400)
    response = client.get("/api/auth/me", headers=bearer(token))
    assert response.status_code == 401
    assert response.json["message"] == "The token may live 86400 s at most."
    assert 'error_description="token too long"' in response.headers["WWW-Authenticate"]


def test_signin_with_deeply_nested_json_is_400(client):
    body = '{"email": ' + "[" * 20_000 + "]" * 20_000 + ', "password": "x"}'
    response = client.post("/api/auth/signin", data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.json["message"] == "The JSON body is nested too deeply."


@pytest.mark.parametrize(
    "path", ["/api/auth/signin", "/api/users/{id}/lists", "/api/users/{id}/tasks"]
)
def test_a_number_too_long_to_read_is_400(client, auth, path):
    """Python refuses to read integers of over 4,300 digits: a 400, not a 500."""
    user = auth.signup("digits@example.com")
    body = (
        '{"title": "t", "name": "n", "email": "a@b.co", "password": "x", "list_id": '
        + "9" * 5000
        + "}"
    )
    response = client.post(
        path.format(id=user.id), data=body, content_type="application/json", headers=user.headers
    )
    assert response.status_code == 400
    assert response.json["message"] == "The JSON body holds a number too long to read."


NOW = int(time.time())
TIMES = st.integers(NOW - 10**9, NOW + 10**9)
CLAIM_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    TIMES,
    TIMES.map(str),  # numeric strings, which PyJWT lets through
    st.floats(),
    st.text(),
    st.text(st.characters(codec=None, categories=["Cc", "Cs", "Zs", "Ll"])),  # NUL, surrogates
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.sampled_from(["id", "email"]), st.text(), max_size=2),
)
CLAIM_NAMES = ["sub", "email", "exp", "iat", "id", "user", "name", "nbf", "iss", "aud"]


@st.composite
def frontend_claims(draw):
    """A valid frontend token's claims, one to three of them replaced by anything."""
    claims = {"sub": "fuzzed", "email": "fuzzed@x.io", "exp": NOW + 600, "iat": NOW}
    for name in draw(st.sets(st.sampled_from(CLAIM_NAMES), min_size=1, max_size=3)):
        claims[name] = draw(CLAIM_VALUES)
    return claims


def sign_any(claims):
    """An HS256 token of any claims at all (PyJWT refuses to sign some, such as a numeric iss)."""
    signed = encode_part({"alg": "HS256", "typ": "JWT"}) + b"." + encode_part(claims)
    signature = hmac.new(SECRET.encode(), signed, hashlib.sha256).digest()
    return (signed + b"." + base64.urlsafe_b64encode(signature).rstrip(b"=")).decode()


def encode_part(part):
    return base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=")


@settings(
    max_examples=1000,
    derandomize=True,  # the same examples every run: a failure reproduces, a pass means one thing
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],  # users provisioned may stay
)
@given(claims=frontend_claims())
def test_no_signed_token_answers_500(client, claims):
    """Whatever a frontend that holds the secret signs, the answer is a 200, 401 or 409."""
    response = client.get("/api/auth/me", headers=bearer(sign_any(claims)))
    assert response.status_code in {200, 401, 409}, (claims, response.json)
