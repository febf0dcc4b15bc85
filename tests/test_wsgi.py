"""The production server, started for real: `python wsgi.py --workers 2` on a free port."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from .conftest import SECRET

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def server(app, database_url):
    """Two waitress workers on the test database (schema applied by `app`); the process."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "BETTER_AUTH_SECRET": SECRET,
        "BCRYPT_ROUNDS": "4",
        "PYTHON_DOTENV_DISABLED": "1",  # tests never read .env
    }
    command = [
        sys.executable,
        "wsgi.py",
        "--workers=2",
        "--threads=4",
        f"--listen=127.0.0.1:{port}",
    ]
    process = subprocess.Popen(command, cwd=ROOT, env=env)
    process.url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(process)
        yield process
    finally:
        if process.poll() is None:
            process.kill()
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
