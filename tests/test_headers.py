import logging

import pytest


def test_api_responses_carry_security_headers(client, auth):
    alice = auth.signup()
    response = client.get(alice.tasks_url, headers=alice.headers)
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert (
        response.headers["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'"
    )
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Referrer-Policy"] == "no-referrer"


@pytest.mark.parametrize(
    ("path", "email", "status"),
    [("/api/auth/signup", "bob@example.com", 201), ("/api/auth/signin", "alice@example.com", 200)],
)
def test_token_responses_are_not_stored(client, auth, path, email, status):
    auth.signup("alice@example.com")
    response = client.post(path, json={"email": email, "password": "correct horse"})
    assert response.status_code == status
    assert response.json["access_token"]
    assert response.headers["Cache-Control"] == "no-store"


def test_errors_carry_security_headers(client):
    response = client.get("/nowhere")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"


def test_docs_get_a_relaxed_policy_limited_to_this_origin(client):
    policy = client.get("/docs").headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy
    assert "http" not in policy  # no other host may be contacted
    asset = client.get("/docs/assets/swagger-ui.css")
    assert asset.headers["Content-Security-Policy"] == policy


def test_request_id_is_echoed_when_well_formed(client):
    response = client.get("/health", headers={"X-Request-ID": "req-42.a:b_c"})
    assert response.headers["X-Request-ID"] == "req-42.a:b_c"


@pytest.mark.parametrize("given", ["", "has spaces", "x" * 129, "<script>", "é"])
def test_request_id_is_generated_when_missing_or_malformed(client, given):
    response = client.get("/health", headers={"X-Request-ID": given})
    generated = response.headers["X-Request-ID"]
    assert generated != given
    assert len(generated) == 32 and int(generated, 16) >= 0


ACCESS_FIELDS = ("method", "route", "status", "duration_ms", "request_id", "user_id")


def access_lines(caplog):
    records = [record for record in caplog.records if record.name == "taskapi.access"]
    return [{name: getattr(record, name) for name in ACCESS_FIELDS} for record in records]


def test_one_access_line_per_request(client, auth, caplog):
    alice = auth.signup()
    with caplog.at_level(logging.INFO, logger="taskapi.access"):
        caplog.clear()
        client.get(alice.tasks_url, headers={**alice.headers, "X-Request-ID": "abc-1"})
        client.get("/api/auth/me")
    listed, refused = access_lines(caplog)
    assert listed["method"] == "GET"
    assert listed["route"] == "/api/users/<user_id>/tasks"
    assert (listed["status"], listed["request_id"], listed["user_id"]) == (200, "abc-1", alice.id)
    assert listed["duration_ms"] >= 0
    assert (refused["status"], refused["user_id"]) == (401, None)


def test_logs_never_contain_passwords_or_tokens(client, caplog):
    password = "hunter2-is-my-password"
    with caplog.at_level(logging.DEBUG):
        signup = client.post("/api/auth/signup", json={"email": "l@x.io", "password": password})
        token = signup.json["access_token"]
        client.post("/api/auth/signin", json={"email": "l@x.io", "password": password})
        headers = {"Authorization": f"Bearer {token}"}
        user_id = signup.json["user"]["id"]
        client.post(f"/api/users/{user_id}/tasks", json={"title": "logged?"}, headers=headers)
        client.get("/api/auth/me", headers={"Authorization": "Bearer forged.token.value"})
    assert len(access_lines(caplog)) == 4
    for secret in (password, token, token.split(".")[2], "forged.token.value", "Bearer"):
        assert secret not in caplog.text
    assert "authorization" not in caplog.text.lower()
