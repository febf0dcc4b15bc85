"""A frontend page on another origin calls the API with fetch: allowed, and refused."""

import json
from urllib.request import Request, urlopen

import pytest
from playwright.sync_api import expect


def sign_up(page, email):
    page.get_by_placeholder("Email").fill(email)
    page.get_by_placeholder("Password").fill("correct horse")
    page.get_by_role("button", name="Sign up").click()


def add_task(page, title):
    page.get_by_placeholder("New task").fill(title)
    page.get_by_role("button", name="Add").click()


def test_page_on_allowed_origin_signs_up_and_manages_tasks(page, api, origins, screenshot):
    page.goto(f"{origins[0]}/?api={api.url}")
    sign_up(page, "ada@example.com")
    expect(page.get_by_role("status")).to_have_text("Tasks of ada@example.com: 0")
    add_task(page, "Buy milk")
    expect(page.get_by_role("status")).to_have_text("Tasks of ada@example.com: 1")
    add_task(page, "Walk the dog")
    expect(page.get_by_role("status")).to_have_text("Tasks of ada@example.com: 2")
    expect(page.get_by_role("listitem")).to_have_text(["Walk the dogDelete", "Buy milkDelete"])
    page.get_by_role("listitem").filter(has_text="Buy milk").get_by_role("button").click()
    expect(page.get_by_role("listitem")).to_have_text(["Walk the dogDelete"])
    expect(page.get_by_role("status")).to_have_text("Tasks of ada@example.com: 1")
    screenshot("page-on-allowed-origin")

    tasks = f"/api/users/{page.evaluate('user.id')}/tasks"
    preflights = {(r.preflight_for, r.path) for r in api.requests if r.method == "OPTIONS"}
    assert preflights >= {("POST", "/api/auth/signup"), ("GET", tasks), ("POST", tasks)}
    assert any(method == "DELETE" and path.startswith(f"{tasks}/") for method, path in preflights)


def test_page_on_other_origin_is_refused_by_the_browser(page, api, origins, screenshot):
    page.goto(f"{origins[1]}/?api={api.url}")
    sign_up(page, "eve@example.com")
    expect(page.get_by_role("status")).to_have_text("TypeError: Failed to fetch")
    screenshot("page-on-other-origin")

    # The preflight got no Access-Control-Allow-Origin, so the POST itself was never sent...
    seen = [(r.method, r.path) for r in api.requests if r.origin == origins[1]]
    assert seen == [("OPTIONS", "/api/auth/signup")]
    # ...and the account does not exist: the same sign-up from outside a browser succeeds.
    body = json.dumps({"email": "eve@example.com", "password": "correct horse"}).encode()
    request = Request(f"{api.url}/api/auth/signup", body, {"Content-Type": "application/json"})
    with urlopen(request) as response:
        assert response.status == 201


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("app.example.test", True),
        ("xexample.test", False),  # matched an unanchored *.example.test once
        ("a.b.example.test", False),
    ],
)
def test_a_wildcard_origin_allows_one_subdomain_label(page, api, origins, host, allowed):
    """CORS_ORIGINS holds http://*.example.test:PORT (see conftest); Chromium decides."""
    page.goto(origins[0].replace("127.0.0.1", host) + "/")
    read = "fetch(arguments[0]).then(r => r.json()).then(b => b.status, e => String(e))"
    outcome = page.evaluate(
        f"(url) => {{ const arguments = [url]; return {read}; }}", api.url + "/health"
    )
    assert outcome == ("ok" if allowed else "TypeError: Failed to fetch")
