"""The production server, started for real: `python wsgi.py --workers 2` on a free port."""

import json
import os
import signal
import urllib.request
from pathlib import Path

import pytest


@pytest.fixture
def server(start_server):
    """Two waitress workers."""
    return start_server("--workers=2", "--threads=4")


def call(url, body=None, token=None):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, json.load(response)


def get_workers(process):
    return [
        int(pid)
        for pid in Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
    ]


def is_running(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_serve_forks_workers_that_answer_and_stop_cleanly_on_sigterm(server):
    workers = get_workers(server)
    credentials = {"email": "ada@example.com", "password": "correct horse"}
    status, signed_up = call(f"{server.url}/api/auth/signup", credentials)
    tasks_url = f"{server.url}/api/users/{signed_up['user']['id']}/tasks"
    for number in range(10):
        status, _ = call(tasks_url, {"title": f"task {number}"}, signed_up["access_token"])
        assert status == 201
    status, tasks = call(tasks_url, token=signed_up["access_token"])
    assert status == 200 and len(tasks) == 10
    assert len(workers) == 2
    server.send_signal(signal.SIGTERM)
    assert server.wait(timeout=15) == 0
    assert not any(is_running(pid) for pid in workers)


def test_serve_stops_every_worker_and_fails_when_one_dies(server):
    first, second = get_workers(server)
    os.kill(first, signal.SIGKILL)
    assert server.wait(timeout=15) == 1
    assert not is_running(second)
