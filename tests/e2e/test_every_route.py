"""Every route the README documents, called with fetch from a page on an allowed origin: the page
reads each answer, and the server saw a preflight for each method and route, answered so the
browser went on. Unit tests never send a preflight; this is where a 500 on one shows."""

import json
import re

import pytest

# What a frontend sends: the bearer token, JSON bodies, the headers it chose. `cache: "no-store"`
# (common in Next.js code) also stops Chromium reusing the preflight of another method on the same
# URL, so every call here is preflighted (but GET /health, a simple request) and checked on its own.
FETCH = """async ([url, method, token, body, headers]) => {
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== null) headers["Content-Type"] = "application/json";
  const init = { method, headers, cache: "no-store" };
  if (body !== null) init.body = JSON.stringify(body);
  const response = await fetch(url, init);  // a CORS refusal throws TypeError: Failed to fetch
  const text = await response.text();
  return {
    status: response.status,
    body: text ? JSON.parse(text) : null,
    headers: Object.fromEntries(response.headers),  // only those the API exposes, lowercased
  };
}"""
PASSWORD = "correct horse"
LAYOUTS = {"users": "/api/users/{user_id}/tasks", "alias": "/api/{user_id}/tasks"}


@pytest.fixture
def call(page, api, origins):
    """fetch from a page on the allowed origin: what the page's script can read of the answer."""
    page.goto(f"{origins[0]}/")

    def call(method, path, token=None, body=None, headers=None):
        return page.evaluate(FETCH, [api.url + path, method, token, body, headers or {}])

    return call


def sign_up(call, email):
    answer = call("POST", "/api/auth/signup", body={"email": email, "password": PASSWORD})
    assert answer["status"] == 201
    return answer["body"]["user"]["id"], answer["body"]["access_token"]


def get_names(header):
    return {name.strip().lower() for name in (header or "").split(",") if name.strip()}


def get_preflighted_routes(requests, origin, user_id):
    """Check every answer as the browser did (this origin allowed; a preflight 2xx, allowing the
    method and headers asked for); return each preflight's method and route, ids as names."""
    routes = set()
    for seen in requests:
        answer = seen.response_headers
        assert (seen.origin, answer.get("Access-Control-Allow-Origin")) == (origin, origin), seen
        if seen.method == "OPTIONS":
            assert 200 <= seen.status < 300, seen
            allowed_methods = get_names(answer.get("Access-Control-Allow-Methods"))
            assert seen.preflight_for.lower() in allowed_methods, seen
            assert get_names(seen.preflight_headers) <= get_names(
                answer.get("Access-Control-Allow-Headers")
            ), seen
            route = re.sub(r"/\d+(?=/|$)", "/{task_id}", seen.path.replace(user_id, "{user_id}"))
            routes.add((seen.preflight_for, route))
    return routes


def test_account_routes_work_across_origins(call, api, origins):
    start = len(api.requests)
    user_id, token = sign_up(call, "grace@example.com")
    assert call("GET", "/api/auth/me", token)["body"]["email"] == "grace@example.com"
    renamed = call("PATCH", "/api/auth/me", token, {"name": "Grace"})
    assert (renamed["status"], renamed["body"]["name"]) == (200, "Grace")
    new_password = {"current_password": PASSWORD, "new_password": "battery staple"}
    assert call("POST", "/api/auth/password", token, new_password)["status"] == 204
    credentials = {"email": "grace@example.com", "password": "battery staple"}
    signed_in = call("POST", "/api/auth/signin", body=credentials)
    assert (signed_in["status"], signed_in["body"]["user"]["id"]) == (200, user_id)
    health = call("GET", "/health")
    assert (health["status"], health["body"]["database"]) == (200, "ok")
    deleted = call("DELETE", f"/api/users/{user_id}", token, {"password": "battery staple"})
    assert deleted["status"] == 204
    assert call("GET", "/api/auth/me", token)["status"] == 401

    assert get_preflighted_routes(api.requests[start:], origins[0], user_id) == {
        ("POST", "/api/auth/signup"),
        ("GET", "/api/auth/me"),
        ("PATCH", "/api/auth/me"),
        ("POST", "/api/auth/password"),
        ("POST", "/api/auth/signin"),
        ("DELETE", "/api/users/{user_id}"),
    }


@pytest.mark.parametrize("name", LAYOUTS)
def test_task_routes_work_across_origins(call, api, origins, name):
    start = len(api.requests)
    user_id, token = sign_up(call, f"{name}@example.com")
    tasks = LAYOUTS[name].format(user_id=user_id)

    key = {"Idempotency-Key": "buy-milk-1"}
    created = call("POST", tasks, token, {"title": "Buy milk"}, key)
    retried = call("POST", tasks, token, {"title": "Buy milk"}, key)
    assert (created["status"], retried["status"]) == (201, 201)
    assert retried["body"]["id"] == created["body"]["id"]
    other = call("POST", tasks, token, {"title": "Walk the dog"})["body"]["id"]
    listed = call("GET", tasks, token)
    assert [task["title"] for task in listed["body"]] == ["Walk the dog", "Buy milk"]
    assert json.loads(listed["headers"]["x-pagination"])["total"] == 2

    task = f"{tasks}/{created['body']['id']}"
    first_etag = call("GET", task, token)["headers"]["etag"]
    replaced = call("PUT", task, token, {"title": "Buy oat milk"}, {"If-Match": first_etag})
    assert (replaced["status"], replaced["body"]["title"]) == (200, "Buy oat milk")
    changed = call("PATCH", task, token, {"priority": "high"})
    assert (changed["status"], changed["body"]["priority"]) == (200, "high")
    toggled = call("PATCH", f"{task}/complete", token)
    assert (toggled["status"], toggled["body"]["completed"]) == (200, True)
    stale = call("DELETE", task, token, headers={"If-Match": first_etag})
    assert (stale["status"], stale["body"]["code"]) == (412, 412)
    fresh = {"If-Match": toggled["headers"]["etag"]}
    assert call("DELETE", task, token, headers=fresh)["status"] == 204

    completed = call("PATCH", tasks, token, {"ids": [other], "completed": True})
    assert (completed["status"], completed["body"][0]["completed"]) == (200, True)
    cleared = call("DELETE", f"{tasks}?completed=true", token)
    assert (cleared["status"], cleared["body"]) == (200, {"deleted": 1})

    route = LAYOUTS[name]
    assert get_preflighted_routes(api.requests[start:], origins[0], user_id) == {
        ("POST", "/api/auth/signup"),
        *[(method, route) for method in ("GET", "POST", "PATCH", "DELETE")],
        *[(method, f"{route}/{{task_id}}") for method in ("GET", "PUT", "PATCH", "DELETE")],
        ("PATCH", f"{route}/{{task_id}}/complete"),
    }


def test_a_body_over_the_limit_is_a_json_413_the_page_can_read(call):
    """waitress refuses it before reading it, in the API's shape and with CORS."""
    answer = call(
        "POST", "/api/auth/signup", body={"email": "big@example.com", "name": "n" * 70_000}
    )
    assert answer["status"] == 413
    assert answer["body"]["message"] == "The request body is too large."
