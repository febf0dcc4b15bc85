"""The database goes away under a running server: 503 in bounded time, recovery, nothing lost.

Runs against a PostgreSQL cluster of its own (never the shared server), stopped and restarted
under the app."""

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time

import pytest
import requests

from taskapi import create_app
from taskapi.db import init_db

from .conftest import REQUIRE_POSTGRES, SECRET, serving


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Cluster:
    """initdb into a temporary folder; pg_ctl start and stop on a free port."""

    def __init__(self):
        self.bin = subprocess.run(
            ["pg_config", "--bindir"], capture_output=True, text=True, check=True
        ).stdout.strip()
        self.folder = tempfile.mkdtemp(prefix="taskapi-pg-")
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            shutil.chown(self.folder, "postgres")
        self.run(
            "initdb", "-D", f"{self.folder}/data", "-U", "postgres", "-A", "trust", "--no-sync"
        )

    def run(self, program, *args, check=True):
        command = [f"{self.bin}/{program}", *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=check, capture_output=True, timeout=60)

    def start(self):
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.folder}"
        self.run(
            "pg_ctl",
            "-D",
            f"{self.folder}/data",
            "-l",
            f"{self.folder}/log",
            "-o",
            options,
            "-w",
            "start",
        )

    def stop(self):
        self.run("pg_ctl", "-D", f"{self.folder}/data", "-m", "immediate", "-w", "stop")

    def remove(self):
        self.run("pg_ctl", "-D", f"{self.folder}/data", "-m", "immediate", "stop", check=False)
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture
def cluster():
    if not shutil.which("pg_config"):
        if REQUIRE_POSTGRES:
            pytest.fail("pg_config is needed to create a throwaway PostgreSQL cluster")
        pytest.skip("no PostgreSQL binaries to create a throwaway cluster")
    cluster = Cluster()
    cluster.start()
    yield cluster
    cluster.remove()


def make_app(url, **overrides):
    settings = {"DATABASE_URL": url, "BETTER_AUTH_SECRET": SECRET, "BCRYPT_ROUNDS": "4"}
    return create_app({**settings, "DB_CONNECT_TIMEOUT": "2", **overrides})


def timed(send, *args, **kwargs):
    started = time.monotonic()
    response = send(*args, timeout=30, **kwargs)
    return response, time.monotonic() - started


def test_outage_answers_503_then_recovers_with_every_acknowledged_task(cluster):
    app = make_app(cluster.url)
    with app.app_context():
        init_db()
    with serving(app) as base:
        body = {"email": "outage@x.io", "password": "correct horse"}
        user = requests.post(f"{base}/api/auth/signup", json=body, timeout=30).json()
        headers = {"Authorization": f"Bearer {user['access_token']}"}
        tasks_url = f"{base}/api/users/{user['user']['id']}/tasks"
        created = [
            requests.post(tasks_url, json={"title": f"t{n}"}, headers=headers, timeout=30)
            for n in range(20)
        ]
        acknowledged = {
            response.json()["id"] for response in created if response.status_code == 201
        }
        assert len(acknowledged) == 20

        cluster.stop()
        for send, url in [
            (requests.get, tasks_url),
            (requests.post, tasks_url),
            (requests.get, f"{base}/api/auth/me"),
        ]:
            response, seconds = timed(send, url, json={"title": "lost?"}, headers=headers)
            assert response.status_code == 503
            assert response.json()["detail"] == "The database is unavailable; try again shortly."
            assert seconds < 5
        health, seconds = timed(requests.get, f"{base}/health")
        assert (health.status_code, health.json()) == (
            503,
            {"status": "unavailable", "database": "unreachable"},
        )

        cluster.start()
        listed, _ = timed(requests.get, tasks_url, params={"page_size": 500}, headers=headers)
        assert listed.status_code == 200  # the pool replaced its dead connections by itself
        assert {task["id"] for task in listed.json()} == acknowledged
        assert requests.get(f"{base}/health", timeout=30).json() == {
            "status": "ok",
            "database": "ok",
        }
        assert (
            requests.post(
                tasks_url, json={"title": "after"}, headers=headers, timeout=30
            ).status_code
            == 201
        )


def test_a_database_that_never_answers_gives_503_after_the_connect_timeout():
    with socket.socket() as silent:  # accepts connections, never speaks
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        app = make_app(
            f"postgresql://postgres@127.0.0.1:{silent.getsockname()[1]}/x", DB_CONNECT_TIMEOUT="1"
        )
        with serving(app) as base:
            response, seconds = timed(requests.get, f"{base}/health")
    assert response.status_code == 503
    assert 0.9 < seconds < 5  # DB_CONNECT_TIMEOUT, with room for a loaded machine


def test_requests_during_an_outage_do_not_pile_up(cluster):
    """While the database is down, concurrent requests all fail fast instead of queueing."""
    app = make_app(cluster.url)
    with app.app_context():
        init_db()
    cluster.stop()
    with serving(app) as base:
        results = []
        threads = [
            threading.Thread(target=lambda: results.append(timed(requests.get, f"{base}/health")))
            for _ in range(16)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert [response.status_code for response, _ in results] == [503] * 16
    assert max(seconds for _, seconds in results) < 5
