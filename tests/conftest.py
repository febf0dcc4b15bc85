"""Fixtures: the app on SQLite and on a fresh PostgreSQL database, a client, and sign-up helpers."""

import email
import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from email import policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import psycopg2
import pytest
from aiosmtpd.controller import Controller

from taskapi import create_app, edge
from taskapi.db import database, init_db
from taskapi.models import TaskList
from taskapi.positions import child_path, spread

ROOT = Path(__file__).resolve().parent.parent
SECRET = "a-test-secret-long-enough-for-every-hmac-algorithm-0123456789abcdef"
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
# .ci/run sets this: there the PostgreSQL half must run, never be skipped.
REQUIRE_POSTGRES = os.environ.get("TASKAPI_REQUIRE_POSTGRES") == "1"
# Where the servers that stand in for a frontend (a JWKS endpoint, Better Auth) listen.
FRONTEND_PORTS = range(9400, 9500)


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(request, tmp_path_factory):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('sqlite')}/taskapi.db"
    else:
        yield from create_postgres_database()


def create_postgres_database():
    """A database of its own on the local server for this test session, dropped after."""
    try:
        admin = psycopg2.connect(POSTGRES_URL, connect_timeout=3)
    except psycopg2.OperationalError as error:
        reason = f"no PostgreSQL at {POSTGRES_URL} ({str(error).strip().splitlines()[0]})"
        if REQUIRE_POSTGRES:
            pytest.fail(f"PostgreSQL is required here: {reason}")
        pytest.skip(f"PostgreSQL half SKIPPED: {reason}; set TEST_POSTGRES_URL to run it")
    admin.autocommit = True
    name = f"taskapi_test_{uuid.uuid4().hex[:12]}"
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    yield urlsplit(POSTGRES_URL)._replace(path=f"/{name}").geturl()
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    admin.close()


@pytest.fixture
def make_app(database_url):
    """create_app with test settings (keyword arguments override them; None leaves a setting
    out, so its default applies), on empty tables."""
    made = []

    def make(**overrides):
        config = {
            "DATABASE_URL": database_url,
            "BETTER_AUTH_SECRET": SECRET,
            "BCRYPT_ROUNDS": "4",
            "RATELIMIT_ENABLED": "false",  # test_limits.py turns them on
            **overrides,
        }
        app = create_app({name: value for name, value in config.items() if value is not None})
        app.testing = True
        with app.app_context():
            init_db()
            if not made:
                for table in ("tasks", "users", "deleted_users", "rate_limits", "outbox"):
                    database.execute_sql(f"DELETE FROM {table}")
        made.append(app)
        return app

    yield make
    if hasattr(database.obj, "close_idle"):
        database.obj.close_idle()  # the next test's app opens its own pool


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@dataclass
class SignedUp:
    id: str
    email: str
    token: str

    @property
    def headers(self):
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def tasks_url(self):
        return f"/api/users/{self.id}/tasks"

    @property
    def lists_url(self):
        return f"/api/users/{self.id}/lists"


class AuthActions:
    def __init__(self, client):
        self.client = client

    def signup(self, email="alice@example.com", password="correct horse", **fields):
        body = {"email": email, "password": password, **fields}
        response = self.client.post("/api/auth/signup", json=body)
        assert response.status_code == 201, response.json
        return SignedUp(response.json["user"]["id"], email, response.json["access_token"])

    def create_task(self, user, **fields):
        response = self.client.post(
            user.tasks_url, json={"title": "a task", **fields}, headers=user.headers
        )
        assert response.status_code == 201, response.json
        return response.json


@pytest.fixture
def auth(client):
    return AuthActions(client)


def pytest_terminal_summary(terminalreporter):
    """Say once, plainly, that the PostgreSQL half did not run."""
    skipped = terminalreporter.stats.get("skipped", [])
    reasons = {report.longrepr[2] for report in skipped if "PostgreSQL half" in report.longrepr[2]}
    for reason in reasons:
        terminalreporter.write_sep("=", reason.removeprefix("Skipped: "), yellow=True, bold=True)


class Inbox:
    """An SMTP server on loopback (aiosmtpd): what arrives is kept, parsed, in `messages`."""

    def __init__(self):
        self.messages = []
        self.arrived = threading.Condition()

    async def handle_DATA(self, server, session, envelope):
        with self.arrived:
            self.messages.append(email.message_from_bytes(envelope.content, policy=policy.default))
            self.arrived.notify_all()
        return "250 OK"

    def wait_for(self, count, timeout=10):
        """The first `count` messages, once that many have arrived (or fails)."""
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.messages) >= count, timeout=timeout)
        assert len(self.messages) >= count, f"{len(self.messages)} of {count} messages arrived"
        return self.messages[:count]


@pytest.fixture
def smtp_server():
    """A real SMTP server on a free loopback port: `.url` for SMTP_URL, `.inbox` to read."""
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=get_free_port())
    controller.start()
    controller.url = f"smtp://127.0.0.1:{controller.port}"
    controller.inbox = inbox
    yield controller
    controller.stop()


def bind_free_port(make_server):
    """make_server(port) on the first free port of FRONTEND_PORTS, and that port."""
    for port in FRONTEND_PORTS:
        try:
            return make_server(port), port
        except OSError:
            continue
    pytest.fail(f"no free port between {FRONTEND_PORTS.start} and {FRONTEND_PORTS.stop - 1}")


@contextmanager
def serving(app):
    """The app behind a real multi-threaded waitress server on a free port, set up as
    wsgi.py sets up each of its workers."""
    server = edge.create_server(app, 8, host="127.0.0.1", port=0)
    gate = app.extensions["password_gate"]
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.effective_port}"
    gate.serve_with(None, 0)
    try:
        server.trigger.pull_trigger(server.close)  # in the loop's thread, not under its select()
    except OSError:  # the loop already closed its trigger pipe: nothing is left to wake
        server.close()
    thread.join(timeout=5)
    server.task_dispatcher.shutdown()


@pytest.fixture
def live_server(make_app):
    """A real server; the bcrypt gate is opened wide, as races are about the database."""
    with serving(make_app(BCRYPT_CONCURRENCY="32")) as base_url:
        yield base_url


def get_free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def start_server(app, database_url, tmp_path):
    """start(*args, prefix=(), **settings): `python wsgi.py` as production runs it (after the
    command `prefix`), on a free port of 127.0.0.1 and the test database (schema applied by
    `app`), with these settings; its log (stderr) goes to a file. The process has .url and
    .log_lines(); all stop after the test."""
    started = []

    def start(*args, prefix=(), **settings):
        port = get_free_port()
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "BETTER_AUTH_SECRET": SECRET,
            "BCRYPT_ROUNDS": "4",
            "PYTHON_DOTENV_DISABLED": "1",  # tests never read .env
            **settings,
        }
        log_path = tmp_path / f"wsgi-{port}.log"
        command = [*prefix, sys.executable, "wsgi.py", f"--listen=127.0.0.1:{port}", *args]
        with open(log_path, "w") as log:  # a group of its own: no worker outlives the test
            process = subprocess.Popen(
                command, cwd=ROOT, env=env, stderr=log, start_new_session=True
            )
        process.url = f"http://127.0.0.1:{port}"
        process.port = port
        process.log_lines = lambda: [json.loads(line) for line in log_path.read_text().splitlines()]
        started.append(process)
        wait_until_healthy(process)
        return process

    yield start
    for process in started:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()


def wait_until_healthy(process):
    for _ in range(100):
        assert process.poll() is None, "the server exited while starting"
        try:
            with urllib.request.urlopen(f"{process.url}/health", timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("the server did not answer /health within 10 s")


def inbox_rows(user_id, count, title="bulk"):
    """Rows for Task.insert_many: `count` top-level tasks in the user's inbox, in order."""
    inbox = TaskList.get(TaskList.user == user_id, TaskList.is_inbox)
    return [
        {"user": user_id, "title": f"{title} {n}", "task_list": inbox.id, "position": position}
        | {"path": child_path("", position)}
        for n, position in enumerate(spread(count))
    ]


RECEIVER_SECRET = "the-receiver-knows-this-secret"
KEYS = ("Delivery", "Event")


class Receiver(ThreadingHTTPServer):
    """A webhook receiver on a free loopback port. It answers each POST with the next status
    of `answers` (204 once they run out), accepting only a 2xx whose signature is valid under
    `secret`; `stall` makes it hold the connection until the test ends."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), ReceiverHandler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}/hooks/taskapi?source=test"
        self.secret = RECEIVER_SECRET
        self.answers = []
        self.stall = False
        self.released = threading.Event()
        self.tried = []  # every delivery id that arrived, in order
        self.accepted = []  # (delivery id, event header, body as JSON) of those accepted
        self.requests = []  # (path, headers) of every request
        self.arrived = threading.Condition()

    def wait_for(self, count, timeout=15):
        """The first `count` accepted deliveries, once that many have arrived (or fails)."""
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.accepted) >= count, timeout=timeout)
        assert len(self.accepted) >= count, f"{len(self.accepted)} of {count} arrived"
        return self.accepted[:count]

    def wait_until_tried(self, count=1, timeout=15):
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.tried) >= count, timeout=timeout)


class ReceiverHandler(BaseHTTPRequestHandler):
    def do_POST(self):
        server = self.server
        body = self.rfile.read(int(self.headers["Content-Length"]))
        expected = "sha256=" + hmac.new(server.secret.encode(), body, hashlib.sha256).hexdigest()
        signed = hmac.compare_digest(self.headers.get("X-Taskapi-Signature", ""), expected)
        with server.arrived:
            server.requests.append((self.path, dict(self.headers)))
            server.tried.append(self.headers["X-Taskapi-Delivery"])
            status = server.answers.pop(0) if server.answers else 204
            server.arrived.notify_all()
        if server.stall:
            server.released.wait(30)
            return
        if 200 <= status < 300 and not signed:
            status = 401
        self.send_response(status)
        if status == 302:
            self.send_header("Location", "/elsewhere")
        self.send_header("Content-Length", "0")
        self.end_headers()
        if 200 <= status < 300:
            with server.arrived:
                delivery_id, event = (self.headers[f"X-Taskapi-{name}"] for name in KEYS)
                server.accepted.append((delivery_id, event, json.loads(body)))
                server.arrived.notify_all()

    def log_message(self, format, *args):
        pass


@pytest.fixture
def receiver():
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.released.set()
    server.shutdown()
    server.server_close()
