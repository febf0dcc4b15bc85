"""Every route the README documents, called with fetch from a page on an allowed origin: the page
reads each answer, and the server saw a preflight for each method and route, answered so the
browser went on. Unit tests never send a preflight; this is where a 500 on one shows."""

import json
import re

import pytest

from taskapi import sessions, verification

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
  const json = response.headers.get("content-type").includes("json");  // not the calendar feed
  return {
    status: response.status,
    body: text && json ? JSON.parse(text) : text || null,
    headers: Object.fromEntries(response.headers),  // only those the API exposes, lowercased
  };
}"""
PASSWORD = "correct horse"
SESSION_FIELDS = {"id", "label", "created_at", "last_used_at", "expires_at", "current"}
BAD_LINK_TOKEN = "not-a-token-from-a-mail"
LAYOUTS = {"users": "/api/users/{user_id}/tasks", "alias": "/api/{user_id}/tasks"}
LIST_LAYOUTS = {"users": "/api/users/{user_id}", "alias": "/api/{user_id}"}


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
            route = re.sub(r"(?<=/sessions/)[\w-]+$", "{session_id}", seen.path)
            route = re.sub(r"/\d+(?=/|$)", "/{task_id}", route.replace(user_id, "{user_id}"))
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


def test_session_routes_work_across_origins(call, api, origins):
    start = len(api.requests)
    account = {"email": "hedy@example.com", "password": PASSWORD}
    phone = call("POST", "/api/auth/signup", body={**account, "device_name": "phone"})
    laptop = call("POST", "/api/auth/signin", body={**account, "device_name": "laptop"})
    assert (phone["status"], laptop["status"]) == (201, 200)
    for answer in (phone["body"], laptop["body"]):
        assert answer["refresh_token"] and answer["refresh_expires_in"] > 0
    user_id, token = phone["body"]["user"]["id"], laptop["body"]["access_token"]
    listed = call("GET", "/api/auth/sessions", token)
    assert listed["status"] == 200 and all(set(each) == SESSION_FIELDS for each in listed["body"])
    current = {each["label"]: each["current"] for each in listed["body"]}
    assert current == {"phone": False, "laptop": True}

    # Another user's session is not found, and stays on.
    _, other_token = sign_up(call, "frances@example.com")
    [other] = call("GET", "/api/auth/sessions", other_token)["body"]
    foreign = call("DELETE", f"/api/auth/sessions/{other['id']}", token)
    assert (foreign["status"], foreign["body"]["message"]) == (404, "Session not found.")
    assert call("GET", "/api/auth/me", other_token)["status"] == 200

    [phone_session] = [each for each in listed["body"] if each["label"] == "phone"]
    ended = call("DELETE", f"/api/auth/sessions/{phone_session['id']}", token)
    assert (ended["status"], ended["body"]) == (204, None)
    assert call("GET", "/api/auth/me", phone["body"]["access_token"])["status"] == 401
    signed_out = call("POST", "/api/auth/signout", token)
    assert (signed_out["status"], signed_out["body"]) == (204, None)
    refused = call("GET", "/api/auth/me", token)
    assert (refused["status"], refused["body"]["message"]) == (401, sessions.ENDED)

    assert get_preflighted_routes(api.requests[start:], origins[0], user_id) == {
        ("POST", "/api/auth/signup"),
        ("POST", "/api/auth/signin"),
        ("GET", "/api/auth/sessions"),
        ("DELETE", "/api/auth/sessions/{session_id}"),
        ("GET", "/api/auth/me"),
        ("POST", "/api/auth/signout"),
    }


def test_refresh_works_once_across_origins(call, api, origins):
    """No token, but a JSON body, so a preflight; a replayed refresh token ends the session."""
    start = len(api.requests)
    body = {"email": "radia@example.com", "password": PASSWORD}
    first = call("POST", "/api/auth/signup", body=body)["body"]
    renewed = call("POST", "/api/auth/refresh", body={"refresh_token": first["refresh_token"]})
    assert (renewed["status"], renewed["body"]["user"]["id"]) == (200, first["user"]["id"])
    assert renewed["body"]["refresh_token"] != first["refresh_token"]
    assert call("GET", "/api/auth/me", renewed["body"]["access_token"])["status"] == 200

    replayed = call("POST", "/api/auth/refresh", body={"refresh_token": first["refresh_token"]})
    assert (replayed["status"], replayed["body"]["message"]) == (401, sessions.REFRESH_REFUSED)
    assert call("GET", "/api/auth/me", renewed["body"]["access_token"])["status"] == 401

    assert get_preflighted_routes(api.requests[start:], origins[0], first["user"]["id"]) == {
        ("POST", "/api/auth/signup"),
        ("POST", "/api/auth/refresh"),
        ("GET", "/api/auth/me"),
    }


def test_email_link_routes_work_across_origins(call, api, origins):
    """A bad link token (422) proves each route and its preflight; tests/test_mail.py follows
    real links from the mail."""
    start = len(api.requests)
    user_id, token = sign_up(call, "barbara@example.com")
    for email in ("barbara@example.com", "nobody@example.com"):  # the same answer for both
        asked = call("POST", "/api/auth/password-reset", body={"email": email})
        assert (asked["status"], asked["body"]) == (202, {"message": verification.RESET_SENT})
    bad_reset = {"token": BAD_LINK_TOKEN, "new_password": "a brand new passphrase"}
    reset = call("POST", "/api/auth/password-reset/confirm", body=bad_reset)
    assert reset["status"] == 422
    assert reset["body"]["errors"]["json"]["token"] == [verification.BAD_LINK]
    verified = call("POST", "/api/auth/verify-email", token, body={"token": BAD_LINK_TOKEN})
    assert verified["status"] == 422
    assert verified["body"]["errors"]["json"]["token"] == [verification.BAD_LINK]
    resent = call("POST", "/api/auth/verify-email/resend", token)
    assert (resent["status"], resent["body"]) == (202, {"message": verification.VERIFY_SENT})

    assert get_preflighted_routes(api.requests[start:], origins[0], user_id) == {
        ("POST", "/api/auth/signup"),
        ("POST", "/api/auth/password-reset"),
        ("POST", "/api/auth/password-reset/confirm"),
        ("POST", "/api/auth/verify-email"),
        ("POST", "/api/auth/verify-email/resend"),
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
    done = call("GET", f"{tasks}/{other}/completions", token)
    assert done["status"] == 404  # a cleared task is a tombstone

    weekly = {"title": "Stand-up", "due_at": "2030-01-07T09:00:00Z"}
    weekly["recurrence"] = {"rule": "FREQ=WEEKLY;BYDAY=MO", "from": "due"}
    repeating = f"{tasks}/{call('POST', tasks, token, weekly)['body']['id']}"
    moved = call("PATCH", f"{repeating}/complete", token)
    assert (moved["status"], moved["body"]["due_at"]) == (200, "2030-01-14T09:00:00+00:00")
    done = call("GET", f"{repeating}/completions", token)
    assert (done["status"], done["body"][0]["due_at"]) == (200, "2030-01-07T09:00:00+00:00")

    route = LAYOUTS[name]
    assert get_preflighted_routes(api.requests[start:], origins[0], user_id) == {
        ("POST", "/api/auth/signup"),
        *[(method, route) for method in ("GET", "POST", "PATCH", "DELETE")],
        *[(method, f"{route}/{{task_id}}") for method in ("GET", "PUT", "PATCH", "DELETE")],
        ("PATCH", f"{route}/{{task_id}}/complete"),
        ("GET", f"{route}/{{task_id}}/completions"),
    }


@pytest.mark.parametrize("name", LIST_LAYOUTS)
def test_list_and_move_routes_work_across_origins(call, api, origins, name):
    start = len(api.requests)
    user_id, token = sign_up(call, f"lists-{name}@example.com")
    base = LIST_LAYOUTS[name].format(user_id=user_id)
    made = call("POST", f"{base}/lists", token, {"name": "Work", "color": "#3b82f6"})
    assert made["status"] == 201 and made["headers"]["location"].endswith(
        f"/lists/{made['body']['id']}"
    )
    work = f"{base}/lists/{made['body']['id']}"
    etag = call("GET", work, token)["headers"]["etag"]
    renamed = call("PATCH", work, token, {"name": "Job"}, {"If-Match": etag})
    assert (renamed["status"], renamed["body"]["name"]) == (200, "Job")
    first = call("POST", f"{work}/move", token, {"previous_id": None})
    assert (first["status"], first["body"]["name"]) == (200, "Job")
    listed = call("GET", f"{base}/lists", token)
    assert [each["name"] for each in listed["body"]] == ["Job", "Inbox"]

    parent = call("POST", f"{base}/tasks", token, {"title": "Plan", "list_id": made["body"]["id"]})
    child = call(
        "POST", f"{base}/tasks", token, {"title": "Draft", "parent_id": parent["body"]["id"]}
    )
    loose = call("POST", f"{base}/tasks", token, {"title": "Loose"})
    moved = call(
        "POST",
        f"{base}/tasks/{loose['body']['id']}/move",
        token,
        {
            "list_id": made["body"]["id"],
            "parent_id": parent["body"]["id"],
            "previous_id": child["body"]["id"],
        },
    )
    assert (moved["status"], moved["body"]["parent_id"]) == (200, parent["body"]["id"])
    shown = call("GET", f"{base}/tasks?list_id={made['body']['id']}&sort=position", token)
    assert [task["title"] for task in shown["body"]] == ["Plan", "Draft", "Loose"]
    assert json.loads(shown["headers"]["x-pagination"])["total"] == 3
    inbox = next(each for each in listed["body"] if each["is_inbox"])
    refused = call("DELETE", f"{base}/lists/{inbox['id']}", token)
    assert (refused["status"], refused["body"]["code"]) == (409, 409)
    assert call("DELETE", work, token)["status"] == 204

    route = LIST_LAYOUTS[name]
    assert get_preflighted_routes(api.requests[start:], origins[0], user_id) == {
        ("POST", "/api/auth/signup"),
        *[(method, f"{route}/lists") for method in ("GET", "POST")],
        *[(method, f"{route}/lists/{{task_id}}") for method in ("GET", "PATCH", "DELETE")],
        ("POST", f"{route}/lists/{{task_id}}/move"),
        ("POST", f"{route}/tasks"),
        ("GET", f"{route}/tasks"),
        ("POST", f"{route}/tasks/{{task_id}}/move"),
    }


@pytest.mark.parametrize("name", LIST_LAYOUTS)
def test_webhook_reminder_and_calendar_routes_work_across_origins(call, api, origins, name):
    start = len(api.requests)
    user_id, token = sign_up(call, f"hooks-{name}@example.com")
    base = LIST_LAYOUTS[name].format(user_id=user_id)
    hook = {"url": "http://127.0.0.1:9/hooks", "events": ["reminder.fired"]}
    made = call("POST", f"{base}/webhooks", token, hook)
    assert (made["status"], len(made["body"]["secret"]) > 20) == (201, True)
    one = f"{base}/webhooks/{made['body']['id']}"
    assert call("GET", f"{base}/webhooks", token)["body"][0]["url"] == hook["url"]
    assert call("GET", one, token)["body"]["events"] == ["reminder.fired"]
    assert call("DELETE", one, token)["status"] == 204

    task = {"title": "Dentist", "due_at": "2030-03-18T08:00:00Z", "reminders": [{"before": 900}]}
    assert call("POST", f"{base}/tasks", token, task)["status"] == 201
    window = "from=2030-03-01T00:00:00Z&to=2030-04-01T00:00:00Z"
    fired = call("GET", f"{base}/reminders?{window}", token)
    assert (fired["status"], fired["body"][0]["fires_at"]) == (200, "2030-03-18T07:45:00+00:00")

    feed = call("POST", "/api/auth/calendar-feed", token)
    assert feed["status"] == 201
    path = feed["body"]["url"].removeprefix(api.url)
    served = call("GET", path)  # as a calendar app reads it: no token
    assert served["status"] == 200 and served["headers"]["content-type"].startswith("text/calendar")
    assert "BEGIN:VTODO" in served["body"] and "TRIGGER;RELATED=END:-PT15M" in served["body"]
    assert call("DELETE", "/api/auth/calendar-feed", token)["status"] == 204

    route = LIST_LAYOUTS[name]
    assert get_preflighted_routes(api.requests[start:], origins[0], user_id) == {
        ("POST", "/api/auth/signup"),
        *[(method, f"{route}/webhooks") for method in ("GET", "POST")],
        *[(method, f"{route}/webhooks/{{task_id}}") for method in ("GET", "DELETE")],
        ("POST", f"{route}/tasks"),
        ("GET", f"{route}/reminders"),
        *[(method, "/api/auth/calendar-feed") for method in ("POST", "DELETE")],
    }


def test_a_body_over_the_limit_is_a_json_413_the_page_can_read(call):
    """waitress refuses it before reading it, in the API's shape and with CORS."""
    answer = call(
        "POST", "/api/auth/signup", body={"email": "big@example.com", "name": "n" * 70_000}
    )
    assert answer["status"] == 413
    assert answer["body"]["message"] == "The request body is too large."
