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
