"""Swagger UI at /docs in Chromium, with every host but this machine cut off."""

import json
from urllib.parse import urlsplit
from urllib.request import Request, urlopen

import pytest
from playwright.sync_api import expect

LOOPBACK = {"127.0.0.1", "localhost"}


@pytest.fixture
def outside_requests(page):
    """Abort, and list, every request the page makes to a host other than this machine."""
    attempted = []

    def loopback_only(route):
        if urlsplit(route.request.url).hostname in LOOPBACK:
            route.continue_()
        else:
            attempted.append(route.request.url)
            route.abort()

    page.context.route("**/*", loopback_only)
    return attempted


def get_json(url, body=None):
    request = Request(url, body and json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urlopen(request) as response:
        return json.load(response)


def test_docs_render_every_operation_without_other_hosts(page, api, outside_requests):
    spec = get_json(f"{api.url}/openapi.json")
    documented = {
        (method.upper(), path)
        for path, item in spec["paths"].items()
        for method in item
        if method != "parameters"
    }
    page.goto(f"{api.url}/docs")
    expect(page.locator(".opblock")).to_have_count(len(documented))
    rendered = page.locator(".opblock").evaluate_all(
        "blocks => blocks.map(b => [b.querySelector('.opblock-summary-method').textContent,"
        " b.querySelector('.opblock-summary-path').dataset.path])"
    )
    assert {tuple(operation) for operation in rendered} == documented
    assert outside_requests == []


def test_docs_run_an_authorized_call(page, api, outside_requests, screenshot):
    signed_up = get_json(
        f"{api.url}/api/auth/signup", {"email": "docs@example.com", "password": "correct horse"}
    )
    page.goto(f"{api.url}/docs")
    page.get_by_role("button", name="Authorize", exact=True).click()
    page.get_by_label("auth-bearer-value").fill(signed_up["access_token"])
    page.get_by_role("button", name="Apply credentials").click()
    page.get_by_role("button", name="Close", exact=True).click()

    me = page.locator("#operations-auth-get_api_auth_me")
    me.locator(".opblock-summary-control").click()
    me.get_by_role("button", name="Try it out").click()
    me.get_by_role("button", name="Execute").click()
    expect(me.locator(".live-responses-table .response .response-col_status")).to_have_text("200")
    expect(me.locator(".live-responses-table .response .response-col_description")).to_contain_text(
        signed_up["user"]["id"]
    )
    screenshot("docs-authorized-call")
    assert outside_requests == []
