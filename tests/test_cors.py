import re

import pytest

ORIGIN = "http://localhost:3000"


def test_allowed_origin_gets_cors_headers(client, auth):
    alice = auth.signup()
    response = client.get(alice.tasks_url, headers={**alice.headers, "Origin": ORIGIN})
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    exposed = {
        name.strip() for name in response.headers["Access-Control-Expose-Headers"].split(",")
    }
    assert exposed == {"X-Pagination", "ETag", "Location", "Retry-After", "X-Request-ID"}
    assert "Access-Control-Allow-Credentials" not in response.headers


def test_errors_carry_cors_headers_too(client):
    response = client.get("/api/auth/me", headers={"Origin": ORIGIN})
    assert response.status_code == 401
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN


def test_other_origin_gets_no_cors_headers(client):
    response = client.get("/health", headers={"Origin": "https://evil.example.com"})
    assert "Access-Control-Allow-Origin" not in response.headers


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE"])
def test_preflight_passes_without_a_token(client, method):
    headers = {
        "Origin": ORIGIN,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization, content-type, if-match",
    }
    response = client.options("/api/users/someone/tasks/1", headers=headers)
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    allowed = response.headers["Access-Control-Allow-Headers"].lower()
    assert {"authorization", "content-type", "if-match"} <= {h.strip() for h in allowed.split(",")}
    assert method in response.headers["Access-Control-Allow-Methods"]


def test_origins_and_credentials_are_configurable(make_app):
    app = make_app(
        CORS_ORIGINS="https://a.example.com, https://b.example.com", CORS_ALLOW_CREDENTIALS="true"
    )
    client = app.test_client()
    response = client.get("/health", headers={"Origin": "https://b.example.com"})
    assert response.headers["Access-Control-Allow-Origin"] == "https://b.example.com"
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    assert (
        "Access-Control-Allow-Origin"
        not in client.get("/health", headers={"Origin": ORIGIN}).headers
    )


def preflight(client, path, method, origin=ORIGIN, headers="authorization, content-type"):
    request_headers = {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": headers,
    }
    return client.options(path, headers=request_headers)


def test_every_route_and_alias_answers_its_preflights(app, client):
    """Flask's own OPTIONS answer, for every rule: an alias given OPTIONS explicitly lost it."""
    rules = [rule for rule in app.url_map.iter_rules() if rule.endpoint != "static"]
    assert any(rule.rule.startswith("/api/<user_id>/tasks") for rule in rules)
    for rule in rules:
        path = re.sub(r"<[^>]+>", "7", rule.rule)  # user_id 7 and task_id 7
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            response = preflight(client, path, method)
            assert response.status_code == 200, (rule.rule, method, response.status_code)
            assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
            assert method in response.headers["Access-Control-Allow-Methods"]


def test_a_browser_may_send_idempotency_key(client):
    response = preflight(client, "/api/someone/tasks", "POST", headers="idempotency-key")
    assert response.headers["Access-Control-Allow-Headers"].lower() == "idempotency-key"


@pytest.mark.parametrize("origin", [ORIGIN, "https://evil.example.com", None])
def test_every_response_varies_on_origin(client, origin):
    response = client.get("/health", headers={"Origin": origin} if origin else {})
    assert "Origin" in {value.strip() for value in response.headers["Vary"].split(",")}


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://app.example.com", True),
        ("https://APP.example.com", True),
        ("https://example.com", False),
        ("https://a.b.example.com", False),
        ("https://xexample.com.evil.net", False),
        ("https://app.example.com.evil.net", False),
        ("http://app.example.com", False),
        ("https://app.example.com:8443", False),
    ],
)
def test_a_wildcard_origin_stands_for_one_subdomain_label(make_app, origin, allowed):
    client = make_app(CORS_ORIGINS="https://*.example.com").test_client()
    response = client.get("/health", headers={"Origin": origin})
    assert (response.headers.get("Access-Control-Allow-Origin") == origin) is allowed
