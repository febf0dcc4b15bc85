"""Metrics (METRICS_LISTEN): what is counted and under which labels, in this process; then
added up across the workers of a real `python wsgi.py --workers 2`, on its own address only."""

import glob
import multiprocessing
import os
import re
import signal
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from taskapi import create_app, db, metrics
from taskapi.ratelimits import PasswordGate

from .conftest import SECRET, get_free_port
from .test_wsgi import call

ON = {"METRICS_LISTEN": "127.0.0.1:9464"}  # in this process nothing listens there
TASKS = "/api/users/<user_id>/tasks"
SIGNIN = {"email": "ada@example.com", "password": "correct horse"}
# One sample of the text format: name{label="value",...} value
SAMPLE = re.compile(r"^(\w+)(?:\{(.*)\})? (\S+)$")


@pytest.fixture
def app(make_app):
    return make_app(**ON)


def scrape_here():
    """What a scrape would give for this process's metrics: a registry to read samples from."""
    client = metrics.get_client()
    registry = client.CollectorRegistry()
    client.multiprocess.MultiProcessCollector(registry)
    return registry


def read(name, **labels):
    return scrape_here().get_sample_value(name, labels) or 0.0


def wait_until(condition, timeout=5):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.02)


def test_requests_are_counted_by_route_template_never_by_path(client, auth):
    alice, bob = auth.signup("alice@example.com"), auth.signup("bob@example.com")
    labels = {"route": TASKS, "method": "GET", "status": "200"}
    before = read("taskapi_requests_total", **labels)
    for user in (alice, bob):
        assert client.get(user.tasks_url, headers=user.headers).status_code == 200
    assert read("taskapi_requests_total", **labels) == before + 2
    text = metrics.get_client().generate_latest(scrape_here()).decode()
    assert alice.id not in text and bob.id not in text


@pytest.mark.parametrize(
    ("method", "path", "labels"),
    [
        ("GET", "/api/users/nobody/tasks", {"route": TASKS, "method": "GET", "status": "401"}),
        ("GET", "/no/such/page/42", {"route": "unmatched", "method": "GET", "status": "404"}),
        ("BREW", "/health", {"route": "unmatched", "method": "other", "status": "405"}),
    ],
)
def test_refused_and_unmatched_requests_are_counted_with_few_labels(client, method, path, labels):
    before = read("taskapi_requests_total", **labels)
    assert client.open(path, method=method).status_code == int(labels["status"])
    assert read("taskapi_requests_total", **labels) == before + 1


def test_latency_is_a_histogram_by_route_and_method(client, auth):
    user = auth.signup()
    labels = {"route": TASKS, "method": "GET"}
    count, fast = (
        "taskapi_request_duration_seconds_count",
        "taskapi_request_duration_seconds_bucket",
    )
    before = read(count, **labels), read(fast, le="10.0", **labels)
    client.get(user.tasks_url, headers=user.headers)
    assert (read(count, **labels), read(fast, le="10.0", **labels)) == (
        before[0] + 1,
        before[1] + 1,
    )
    assert read("taskapi_request_duration_seconds_sum", **labels) > 0


def test_without_metrics_listen_nothing_is_counted_and_no_route_serves_them(make_app):
    app = make_app(METRICS_LISTEN=None)
    assert "metrics" not in app.extensions
    assert app.extensions["password_gate"].metrics is None
    assert app.test_client().get("/metrics").status_code == 404


def test_database_connections_in_use_and_idle(app, database_url):
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite has no pool")
    sample = app.extensions["metrics"].sample
    with app.app_context():
        db.ping()
        sample(metrics.get_pool())
        assert read("taskapi_db_connections_in_use") == 1
    sample(metrics.get_pool())
    assert read("taskapi_db_connections_in_use") == 0
    assert read("taskapi_db_connections_idle") >= 1


def hold_a_connection(app, released):
    """A thread that takes a pooled connection and keeps it until `released` is set."""
    taken = threading.Event()

    def hold():
        with app.app_context():
            db.ping()
            taken.set()
            released.wait(10)

    threading.Thread(target=hold, daemon=True).start()
    assert taken.wait(5)


def test_waits_for_a_pooled_connection_are_counted(make_app, database_url):
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite has no pool")
    app = make_app(DB_POOL_SIZE="1", DB_MAX_OVERFLOW="0", **ON)
    released = threading.Event()
    hold_a_connection(app, released)
    waits = read("taskapi_db_connection_waits_total")
    with ThreadPoolExecutor(1) as pool:
        health = pool.submit(app.test_client().get, "/health")
        wait_until(lambda: read("taskapi_db_connection_waits_total") == waits + 1)
        released.set()
        assert health.result().status_code == 200


def test_a_wait_for_a_pooled_connection_in_vain_is_counted(make_app, database_url, monkeypatch):
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite has no pool")
    monkeypatch.setattr(db, "POOL_WAIT_SECONDS", 1)
    app = make_app(DB_POOL_SIZE="1", DB_MAX_OVERFLOW="0", **ON)
    released = threading.Event()
    hold_a_connection(app, released)
    timeouts = read("taskapi_db_connection_wait_timeouts_total")
    assert app.test_client().get("/health").status_code == 503
    released.set()
    assert read("taskapi_db_connection_wait_timeouts_total") == timeouts + 1


def test_failed_database_connections_are_counted():
    app = create_app(
        {**ON, "BETTER_AUTH_SECRET": SECRET, "DATABASE_URL": "postgresql://u@127.0.0.1:1/none"}
    )
    failures = read("taskapi_db_connect_failures_total")
    assert app.test_client().get("/health").status_code == 503
    assert read("taskapi_db_connect_failures_total") == failures + 1


def test_password_requests_refused_by_the_gate_are_counted_by_reason(app, auth, monkeypatch):
    auth.signup(SIGNIN["email"], SIGNIN["password"])
    gate, client = app.extensions["password_gate"], app.test_client()
    monkeypatch.setattr(PasswordGate, "WAIT_SECONDS", 0.1)
    gate.slots = multiprocessing.BoundedSemaphore(1)
    gate.slots.acquire()  # the one bcrypt slot is taken: a sign-in waits, in vain
    before = read("taskapi_password_refused_total", reason="timeout")
    assert client.post("/api/auth/signin", json=SIGNIN).status_code == 503
    assert read("taskapi_password_refused_total", reason="timeout") == before + 1
    gate.admitted = threading.BoundedSemaphore(1)
    gate.admitted.acquire()  # and no room to wait: refused at once
    before = read("taskapi_password_refused_total", reason="busy")
    assert client.post("/api/auth/signin", json=SIGNIN).status_code == 503
    assert read("taskapi_password_refused_total", reason="busy") == before + 1


def test_password_requests_waiting_for_bcrypt_are_counted(app, auth):
    auth.signup(SIGNIN["email"], SIGNIN["password"])
    gate = app.extensions["password_gate"]
    gate.slots = multiprocessing.BoundedSemaphore(1)
    gate.slots.acquire()
    waits = read("taskapi_password_waits_total")
    with ThreadPoolExecutor(1) as pool:
        signin = pool.submit(app.test_client().post, "/api/auth/signin", json=SIGNIN)
        wait_until(lambda: read("taskapi_password_waiting") == 1)
        gate.slots.release()
        assert signin.result().status_code == 200
    assert read("taskapi_password_waiting") == 0
    assert read("taskapi_password_waits_total") == waits + 1


def scrape(port):
    """The samples served on METRICS_LISTEN, parsed: {(name, frozenset(labels)): value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, labels, value = SAMPLE.match(line).groups()
            pairs = frozenset(re.findall(r'(\w+)="([^"]*)"', labels or ""))
            samples[name, pairs] = float(value)
    return samples


def list_until_both_workers_served(server):
    """GETs of one user's tasks, 8 at a time on new connections, until each of the two worker
    processes has answered some (their access log lines say which): how many were sent."""
    _, user = call(f"{server.url}/api/auth/signup", SIGNIN)
    url = f"{server.url}/api/users/{user['user']['id']}/tasks"
    sent = 0
    with ThreadPoolExecutor(8) as pool:
        while len(get_serving_processes(server)) < 2:
            assert sent < 400, "one worker answered every request"
            list(pool.map(lambda _: call(url, token=user["access_token"]), range(16)))
            sent += 16
    return sent


def get_serving_processes(server):
    lines = server.log_lines()
    return {line["process"] for line in lines if line.get("route") == TASKS}


def list_route(status="200"):
    return frozenset({("route", TASKS), ("method", "GET"), ("status", status)})


def test_both_workers_are_counted_and_served_on_their_own_address_only(start_server):
    port = get_free_port()
    server = start_server("--workers=2", "--threads=4", METRICS_LISTEN=f"127.0.0.1:{port}")
    sent = list_until_both_workers_served(server)
    samples = scrape(port)
    assert samples["taskapi_requests_total", list_route()] == sent
    timed = frozenset({("route", TASKS), ("method", "GET")})
    assert samples["taskapi_request_duration_seconds_count", timed] == sent
    with pytest.raises(urllib.error.HTTPError) as public:
        urllib.request.urlopen(f"{server.url}/metrics", timeout=10)
    assert public.value.code == 404


def test_each_worker_samples_its_pool(start_server, database_url):
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite has no pool")
    port = get_free_port()
    server = start_server("--workers=2", METRICS_LISTEN=f"127.0.0.1:{port}")
    list_until_both_workers_served(server)
    idle = ("taskapi_db_connections_idle", frozenset())
    in_use = ("taskapi_db_connections_in_use", frozenset())

    def at_rest():  # each worker keeps its connections open, and its delivery round ends
        samples = scrape(port)
        return samples[idle] >= 2 and samples[in_use] == 0

    wait_until(at_rest)


def get_metrics_directories():
    return set(glob.glob(os.path.join(tempfile.gettempdir(), "taskapi-metrics-*")))


def test_each_start_counts_from_zero_and_leaves_no_files(start_server):
    port, before = get_free_port(), get_metrics_directories()
    first = start_server("--workers=2", METRICS_LISTEN=f"127.0.0.1:{port}")
    list_until_both_workers_served(first)
    assert len(get_metrics_directories() - before) == 1
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=15) == 0
    assert get_metrics_directories() == before
    start_server("--workers=2", METRICS_LISTEN=f"127.0.0.1:{port}")
    assert ("taskapi_requests_total", list_route()) not in scrape(port)
