"""A waitress process killed under load: no idempotent request fails, no acknowledged write lost."""

import os
import signal
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg2
import pytest

from .conftest import Client, running_topology

CLIENTS = 6
SECONDS_BEFORE_KILL = 2
SECONDS_AFTER_KILL = 4
MAX_ROUNDS = 300  # per client


@dataclass
class Outcome:
    what: str
    status: int
    at: float
    title: str = ""
    body: bytes = b""


@pytest.fixture
def topology():
    """A topology of its own for each test here, since each one kills processes."""
    with running_topology() as topology:
        yield topology


def idempotent(client, outcomes, method, path, body, token):
    """Send; if the answer was cut short (the process died after nginx had begun passing its
    response on, so nginx could not move it), send again once, as an idempotent request allows."""
    response = client.request(method, path, body, token)
    if response.status == 0:
        outcomes.append(Outcome(f"{method} cut short, sent again", 0, time.monotonic()))
        response = client.request(method, path, body, token)
    return response


def load(client, user, stop, outcomes):
    """GET and PUT one task, create another, until stopped. A create that got no 201 may have
    committed before the process died: it is sent again with the same Idempotency-Key, which
    answers the first task if there is one, and creates it if not."""
    created = client.request("POST", user.tasks_url, {"title": "shared"}, user.token)
    url = created.headers["location"]
    for n in range(MAX_ROUNDS):
        if stop.is_set():
            return
        for method, body in (("GET", None), ("PUT", {"title": f"put {n}"})):
            response = idempotent(client, outcomes, method, url, body, user.token)
            outcomes.append(Outcome(method, response.status, time.monotonic(), body=response.body))
        title, key = f"{user.id} {n}", {"Idempotency-Key": f"create {n}"}
        response = client.request("POST", user.tasks_url, {"title": title}, user.token, key)
        outcomes.append(Outcome("POST", response.status, time.monotonic(), title, response.body))
        if response.status != 201:
            sent_again = datetime.now(UTC)
            response = client.request("POST", user.tasks_url, {"title": title}, user.token, key)
            outcomes.append(Outcome("POST again", response.status, time.monotonic(), title))
            created = datetime.fromisoformat(response.json["created_at"])
            found = "had committed all the same" if created < sent_again else "had not committed"
            outcomes.append(Outcome(f"failed POST {found}", 0, time.monotonic(), title))


def test_killing_one_process_under_load(topology, capsys):
    client = Client(topology["TOPOLOGY_URL"], topology["TOPOLOGY_CA"])
    users = [client.signup(f"load{i}@example.com") for i in range(CLIENTS)]
    stop, outcomes = threading.Event(), []
    with ThreadPoolExecutor(CLIENTS) as pool:
        clients = [pool.submit(load, client, user, stop, outcomes) for user in users]
        try:
            time.sleep(SECONDS_BEFORE_KILL)
            os.kill(int(topology["TOPOLOGY_WAITRESS_PIDS"].split()[0]), signal.SIGKILL)
            killed_at = time.monotonic()
            time.sleep(SECONDS_AFTER_KILL)
        finally:
            stop.set()
    for finished in clients:
        finished.result()  # a client that raised fails the test here

    failed = [o for o in outcomes if o.what in ("GET", "PUT") and o.status != 200]
    assert failed == []
    assert any(o.what == "GET" and o.at > killed_at for o in outcomes)
    posts = [o for o in outcomes if o.what == "POST"]
    assert {o.status for o in posts} <= {0, 201, 502}
    assert all(b'"code": 502' in o.body for o in posts if o.status == 502)
    assert all(o.status == 201 for o in outcomes if o.what == "POST again")
    stored = stored_titles(topology["TOPOLOGY_DATABASE_URL"])
    assert all(stored[o.title] == 1 for o in posts)  # none lost, none twice

    hit, resent = hit_by_the_kill(topology["TOPOLOGY_ACCESS_LOG"])
    assert hit > 0  # so the kill did meet traffic
    counts = Counter(f"{o.what} {o.status or ''}".strip() for o in outcomes)
    with capsys.disabled():
        print("\nOne of two processes killed under load; what the clients saw:")
        for outcome, count in sorted(counts.items()):
            print(f"  {outcome}: {count}")
        print(
            f"  requests that met the killed process: {hit}, sent by nginx to the other: {resent}"
        )


def test_no_process_left_answers_json_502(topology):
    for pid in topology["TOPOLOGY_WAITRESS_PIDS"].split():
        os.kill(int(pid), signal.SIGKILL)
    response = Client(topology["TOPOLOGY_URL"], topology["TOPOLOGY_CA"]).request("GET", "/health")
    assert response.status == 502
    assert response.headers["content-type"] == "application/json"
    assert response.json["code"] == 502 and response.json["detail"] == response.json["message"]


def stored_titles(database_url):
    with psycopg2.connect(database_url) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT title FROM tasks")
        return Counter(title for (title,) in cursor.fetchall())


def hit_by_the_kill(access_log):
    """Requests that met the killed process (nginx logs a 502 for that attempt), and those of
    them nginx then sent to the other process (two statuses, as in `502, 200`)."""
    with open(access_log) as log:
        tried = [line.split(" upstream_status=")[1].split(" time=")[0] for line in log]
    failed = [statuses for statuses in tried if "502" in statuses]
    return len(failed), sum(1 for statuses in failed if "," in statuses)
