"""The primary database killed under load (pg_auto_failover, two nodes in synchronous
replication): taskapi, on the formation's multi-host URL, follows the failover. Meanwhile it
answers 503 in the contract's shape, never 500; it serves writes again within seconds; and no
create it acknowledged is lost or made twice."""

import contextlib
import json
import os
import signal
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psycopg2

from ..topology.conftest import Client

WRITERS = 4  # users, each creating tasks one after another
READERS = 2  # users listing their tasks
SECONDS_BEFORE_KILL = 2
SECONDS_HELD = 1  # the standby's replay held before the kill
WRITES_BACK_WITHIN = 15  # seconds after the kill
SECONDS_AFTER_RECOVERY = 2
PAUSE = 0.1  # before sending a failed create again, and between two health checks
UNAVAILABLE = "The database is unavailable; try again shortly."
OUTAGE = {"status": "unavailable", "database": "unreachable"}  # /health's own answer


@dataclass
class Outcome:
    what: str  # create, list or health
    status: int  # 0: the connection broke before a whole answer came
    sent: float  # time.time()
    at: float
    body: bytes
    headers: dict
    title: str = ""  # a create's


class Load:
    """Clients sending requests until stopped; every answer is kept, in `outcomes`."""

    def __init__(self, client):
        self.client = client
        self.stop = threading.Event()
        self.outcomes = []

    def send(self, what, method, path, body=None, user=None, headers=None):
        sent = time.time()
        token = user.token if user else None
        response = self.client.request(method, path, body, token, headers)
        title = body["title"] if body else ""
        self.outcomes.append(
            Outcome(
                what, response.status, sent, time.time(), response.body, response.headers, title
            )
        )
        return response

    def write(self, user):
        """Create tasks one after another. A create that got a 503 or a broken connection is
        sent again with the same Idempotency-Key (it may have committed), until acknowledged."""
        number = 0
        while not self.stop.is_set():
            title, key = f"{user.id} {number}", {"Idempotency-Key": f"create {number}"}
            for _ in range(300):
                response = self.send("create", "POST", user.tasks_url, {"title": title}, user, key)
                if response.status not in (0, 503):
                    break
                time.sleep(PAUSE)
            number += 1

    def read(self, user):
        while not self.stop.is_set():
            self.send("list", "GET", user.tasks_url, user=user)

    def watch_health(self):
        while not self.stop.is_set():
            self.send("health", "GET", "/health")
            time.sleep(PAUSE)

    def get(self, what, status=None, sent_after=0.0):
        return [
            outcome
            for outcome in self.outcomes
            if outcome.what == what
            and status in (None, outcome.status)
            and outcome.sent > sent_after
        ]


def test_killing_the_primary_under_load(formation, start_server, capsys):
    primary, standby = get_roles(formation)
    acknowledge_once_applied(formation[f"HA_{primary}_URL"])
    server = start_server("--workers=2")
    load = Load(Client(server.url))
    users = [load.client.signup(f"ha{number}@example.com") for number in range(WRITERS + READERS)]
    with ThreadPoolExecutor(len(users) + 1) as pool:
        running = [pool.submit(load.write, user) for user in users[:WRITERS]]
        running += [pool.submit(load.read, user) for user in users[WRITERS:]]
        running.append(pool.submit(load.watch_health))
        try:
            time.sleep(SECONDS_BEFORE_KILL)
            with replay_held(int(formation[f"HA_{standby}_PID"])):
                time.sleep(SECONDS_HELD)  # every writer's create waits for its commit
                killed_at = time.time()
                kill_node(int(formation[f"HA_{primary}_PID"]))
            wait_for(lambda: load.get("create", 201, killed_at), killed_at + 60)
            time.sleep(SECONDS_AFTER_RECOVERY)
        finally:
            load.stop.set()
    for finished in running:
        finished.result()  # a client that raised fails the test here

    answers = sorted(load.outcomes, key=lambda outcome: outcome.at)
    statuses = Counter(f"{outcome.what} {outcome.status}" for outcome in answers)
    assert {outcome.status for outcome in answers} <= {200, 201, 503}, statuses
    assert all(outcome.status < 300 for outcome in answers if outcome.at < killed_at), statuses
    assert all(is_unavailable(outcome) for outcome in answers if outcome.status == 503)
    assert not [line for line in server.log_lines() if line["level"] in ("ERROR", "CRITICAL")]
    assert load.get("list", 503) and load.get("create", 503)  # the kill met both

    assert load.get("create", 201, killed_at), f"no write served after the kill: {statuses}"
    back_at = min(outcome.at for outcome in load.get("create", 201, killed_at))
    assert back_at - killed_at < WRITES_BACK_WITHIN
    assert all(outcome.status < 300 for outcome in answers if outcome.sent > back_at), statuses
    assert load.get("health", 503, killed_at)  # the outage, reported
    assert load.get("health")[-1].status == 200  # and the recovery

    acknowledged = {outcome.title: json.loads(outcome.body) for outcome in load.get("create", 201)}
    new_primary = formation[f"HA_{standby}_URL"]
    stored = get_tasks(new_primary)
    assert not is_in_recovery(new_primary)
    assert Counter(stored.values()).most_common(1)[0][1] == 1  # no task made twice
    assert {title: task["id"] for title, task in acknowledged.items()} == {
        title: task_id for task_id, title in stored.items() if title in acknowledged
    }  # every acknowledged create there, as answered
    assert get_committed_unanswered(load, acknowledged)  # so the retries met a committed try
    with capsys.disabled():
        report(formation, primary, load, killed_at, back_at, statuses, acknowledged)


def report(formation, primary, load, killed_at, back_at, statuses, acknowledged):
    health_back_at = min(outcome.at for outcome in load.get("health", 200, killed_at))
    print(f"\nFormation started in {formation['started_in']:.1f} s; {primary.lower()} killed.")
    print(f"  writes served again {back_at - killed_at:.1f} s after the kill")
    print(f"  /health: 503 from the kill, 200 again {health_back_at - killed_at:.1f} s after it")
    for outcome, count in sorted(statuses.items()):
        print(f"  {outcome}: {count}")
    tries = Counter(outcome.title for outcome in load.get("create"))
    resent = [title for title in acknowledged if tries[title] > 1]
    print(
        f"  creates acknowledged: {len(acknowledged)}, each stored once; {len(resent)} sent "
        f"more than once, of which {len(get_committed_unanswered(load, acknowledged))} had "
        "committed at the first try (the retry answered that task)"
    )


def get_committed_unanswered(load, acknowledged):
    """The creates whose first try committed although its answer was a 503: the task the
    retry answered (the key's first response) was made before the retry was sent."""
    resent = {}
    for outcome in load.get("create"):
        resent.setdefault(outcome.title, []).append(outcome.sent)
    return [
        title
        for title, task in acknowledged.items()
        if len(resent[title]) > 1
        and datetime.fromisoformat(task["created_at"]).timestamp() < resent[title][1]
    ]


def wait_for(condition, deadline):
    while not condition() and time.time() < deadline:
        time.sleep(0.1)


def is_unavailable(outcome):
    """The contract's error shape for 503, or /health's own answer to an outage."""
    body = json.loads(outcome.body)
    if outcome.what == "health":
        return body == OUTAGE
    return outcome.headers["content-type"] == "application/json" and body == {
        "code": 503,
        "status": "Service Unavailable",
        "message": UNAVAILABLE,
        "detail": UNAVAILABLE,
    }


def kill_node(pid):
    """SIGKILL a node's pg_autoctl and every process under it (its Postgres, and Postgres's
    own), each stopped first so that none goes on a moment without the others."""
    stopped = set()
    while pids := set(get_tree(pid)) - stopped:
        for each in pids:
            with contextlib.suppress(ProcessLookupError):  # a backend that just ended
                os.kill(each, signal.SIGSTOP)
        stopped |= pids
    for each in stopped:
        with contextlib.suppress(ProcessLookupError):
            os.kill(each, signal.SIGKILL)


def get_tree(pid):
    """pid and its descendants."""
    children = []
    with contextlib.suppress(FileNotFoundError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            children += (task / "children").read_text().split()
    return [pid, *(each for child in children for each in get_tree(int(child)))]


def acknowledge_once_applied(primary_url):
    """Commits wait for the standby to apply them (remote_apply), not only to flush them (on):
    then holding the standby's replay holds every commit's answer, with its WAL on the standby."""
    with contextlib.closing(psycopg2.connect(primary_url)) as connection:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("ALTER SYSTEM SET synchronous_commit = 'remote_apply'")
            cursor.execute("SELECT pg_reload_conf()")


@contextlib.contextmanager
def replay_held(node_pid):
    """The standby's replay (its startup process) stopped meanwhile: the WAL it receives is
    flushed, not applied. A primary killed then leaves commits on the standby whose answers
    never came: the case an Idempotency-Key is for."""
    (startup,) = [
        pid for pid in get_tree(node_pid) if get_title(pid).startswith("postgres: startup")
    ]
    os.kill(startup, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(startup, signal.SIGCONT)


def get_title(pid):
    with contextlib.suppress(FileNotFoundError):
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
    return ""


def get_roles(formation):
    """The primary's name (NODE1 or NODE2), then the standby's."""
    return sorted(["NODE1", "NODE2"], key=lambda name: is_in_recovery(formation[f"HA_{name}_URL"]))


def query(url, sql):
    with contextlib.closing(psycopg2.connect(url)) as connection:
        with connection.cursor() as cursor:
            cursor.execute(sql)
            return cursor.fetchall()


def is_in_recovery(url):
    return query(url, "SELECT pg_is_in_recovery()")[0][0]


def get_tasks(url):
    return dict(query(url, "SELECT id, title FROM tasks"))
