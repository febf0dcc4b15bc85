"""Browser fixtures: taskapi on waitress, a static page on two other origins, and Chromium."""

import functools
import os
import threading
from collections import namedtuple
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from taskapi import create_app
from taskapi.db import init_db
from taskapi.edge import create_server

from ..conftest import SECRET

HERE = Path(__file__).parent
OUTPUT = HERE / "output"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# Headless, and no calls home: without the last four, Chromium reaches for Google's hosts at start.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Any name under .test reaches this machine, so pages can be served from origins with names.
    "--host-resolver-rules=MAP *.test 127.0.0.1",
]
PORTS = range(9200, 9300)

Seen = namedtuple(
    "Seen", "method path origin preflight_for preflight_headers status response_headers"
)
Server = namedtuple("Server", "url requests")


class Recorder:
    """WSGI middleware: every request as the server received it, preflights included, with the
    status and headers it was answered with (recorded when the answer starts)."""

    def __init__(self, app):
        self.app = app
        self.requests = []

    def __call__(self, environ, start_response):
        def record_answer(status, headers, exc_info=None):
            self.requests.append(
                Seen(
                    environ["REQUEST_METHOD"],
                    environ["PATH_INFO"],
                    environ.get("HTTP_ORIGIN"),
                    environ.get("HTTP_ACCESS_CONTROL_REQUEST_METHOD"),
                    environ.get("HTTP_ACCESS_CONTROL_REQUEST_HEADERS"),
                    int(status.split()[0]),
                    dict(headers),
                )
            )
            return start_response(status, headers, exc_info)

        return self.app(environ, record_answer)


def serve_on_free_port(make_server):
    """Bind the first free port of PORTS; binding at once leaves no race between two servers."""
    for port in PORTS:
        try:
            return make_server(port), f"http://127.0.0.1:{port}"
        except OSError:
            continue
    pytest.fail(f"no free port between {PORTS.start} and {PORTS.stop - 1}")


@pytest.fixture(scope="session")
def origins():
    """Two origins serving site/: the API allows the first and not the second."""
    handler = functools.partial(SimpleHTTPRequestHandler, directory=HERE / "site")
    servers = []
    for _ in range(2):
        server, url = serve_on_free_port(
            lambda port: ThreadingHTTPServer(("127.0.0.1", port), handler)
        )
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append((server, url))
    yield [url for _, url in servers]
    for server, _ in servers:
        server.shutdown()
        server.server_close()


def get_wildcard_origin(origin):
    return origin.replace("127.0.0.1", "*.example.test")


@pytest.fixture(scope="session")
def api(origins, tmp_path_factory):
    """taskapi on waitress with a fresh SQLite file; `api.requests` lists what it received."""
    app = create_app(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path_factory.mktemp('e2e')}/taskapi.db",
            "BETTER_AUTH_SECRET": SECRET,
            "BCRYPT_ROUNDS": "4",
            # Every user of this suite calls from 127.0.0.1, about 20 password-route calls a
            # minute: the default limit per address (20/minute, tests/test_limits.py) is too few.
            "AUTH_RATE_LIMIT": "200/minute",
            # and, on the same port as origins[0], any one-label name under example.test
            "CORS_ORIGINS": f"{origins[0]}, {get_wildcard_origin(origins[0])}",
            "WEBHOOK_ALLOW_PRIVATE": "true",  # the webhook routes' test names a loopback URL
        }
    )
    with app.app_context():
        init_db()
    app.wsgi_app = recorder = Recorder(app.wsgi_app)
    server, url = serve_on_free_port(
        lambda port: create_server(app, 4, host="127.0.0.1", port=port)
    )
    threading.Thread(target=server.run, daemon=True).start()
    yield Server(url, recorder.requests)
    server.close()


@pytest.fixture(scope="session")
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    yield context.new_page()
    context.close()


@pytest.fixture
def screenshot(page):
    """Save the page to tests/e2e/output/NAME.png, the folder `make e2e` reports."""
    OUTPUT.mkdir(exist_ok=True)
    return lambda name: page.screenshot(path=OUTPUT / f"{name}.png", full_page=True)
