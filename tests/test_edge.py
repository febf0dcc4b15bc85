"""The edge as production runs it: `python wsgi.py`, real sockets, the log it writes."""

import json
import os
import socket
import subprocess
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from .conftest import ROOT, SECRET

LIMITS_ON = {"RATELIMIT_ENABLED": "true"}
SIGNUP = b"POST /api/auth/signup HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"


def connect(server, source="127.0.0.1"):
    sock = socket.create_connection(
        ("127.0.0.1", server.port), timeout=10, source_address=(source, 0)
    )
    return sock


def read_response(sock):
    """Status, headers (lowercase names) and body of the one response on sock."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before a response: {data!r}"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines)
    while len(body) < int(headers.get("content-length", 0)):
        body += sock.recv(65536)
    return int(status_line.split()[1]), headers, body


def is_closed_by_server(sock):
    sock.settimeout(10)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def timed_health(server):
    started = time.monotonic()
    with urllib.request.urlopen(f"{server.url}/health", timeout=30) as response:
        assert response.status == 200
    return time.monotonic() - started


def test_a_body_over_the_limit_is_refused_before_it_is_sent(start_server):
    server = start_server(MAX_CONTENT_LENGTH="4096")
    with connect(server) as sock:
        sock.sendall(
            SIGNUP + b"Content-Length: 104857600\r\nOrigin: http://localhost:3000\r\n\r\n"
        )  # and not one byte of the 100 MB
        status, headers, body = read_response(sock)
        assert is_closed_by_server(sock)
    assert (status, headers["content-type"]) == (413, "application/json")
    assert json.loads(body) == {
        "code": 413,
        "status": "Request Entity Too Large",
        "message": "The request body is too large.",
        "detail": "The request body is too large.",
    }
    assert headers["access-control-allow-origin"] == "http://localhost:3000"


def test_a_chunked_body_is_cut_off_at_the_limit(start_server):
    server = start_server(MAX_CONTENT_LENGTH="4096")
    with connect(server) as sock:
        sock.sendall(SIGNUP + b"Transfer-Encoding: chunked\r\n\r\n")
        for _ in range(5):  # 5 KiB of an endless body
            sock.sendall(b"400\r\n" + b"x" * 1024 + b"\r\n")
        status, headers, _ = read_response(sock)
    assert (status, headers["content-type"]) == (413, "application/json")


def test_a_body_of_exactly_the_limit_reaches_the_app(start_server):
    server = start_server(MAX_CONTENT_LENGTH="4096")
    body = json.dumps({"email": "a@x.io", "password": "correct horse", "name": ""})
    body = body[:-1] + " " * (4096 - len(body)) + "}"
    response = requests.post(
        f"{server.url}/api/auth/signup", data=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 201


def test_malformed_headers_get_a_json_400(start_server):
    server = start_server()
    with connect(server) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: x\r\n\r\n")
        status, headers, body = read_response(sock)
    assert (status, headers["content-type"]) == (400, "application/json")
    assert json.loads(body)["message"] == "The request is malformed."


def test_connections_that_never_finish_a_request_are_closed(start_server):
    """With the connection limit full of them, /health is answered once they are closed."""
    server = start_server(CONNECTION_LIMIT="20", REQUEST_TIMEOUT="2")
    stalled = [connect(server) for _ in range(25)]
    for sock in stalled[:20]:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # never the blank line
    # The last five send nothing at all; all 25 hold connections until the deadline.
    assert timed_health(server) < 2 + 3
    assert all(is_closed_by_server(sock) for sock in stalled)
    for sock in stalled:
        sock.close()


def test_hundreds_of_idle_connections_leave_health_answering(start_server):
    server = start_server()
    stalled = [connect(server, f"127.0.0.{2 + number % 23}") for number in range(230)]
    for sock in stalled:
        sock.sendall(b"GET /health HTTP/1.1\r\n")
    assert timed_health(server) < 1
    for sock in stalled:
        sock.close()


def test_a_slow_body_is_dropped_at_the_deadline(start_server):
    server = start_server(REQUEST_TIMEOUT="2")
    with connect(server) as sock:
        sock.sendall(b"POST /api/auth/signin HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
        started = time.monotonic()
        with pytest.raises((BrokenPipeError, ConnectionResetError)):
            for _ in range(100):  # a byte every 0.1 s: never idle, never done in time
                sock.sendall(b" ")
                time.sleep(0.1)
    assert 2 <= time.monotonic() - started < 2 + 3


def test_a_limit_holds_for_all_the_workers_together(start_server):
    server = start_server("--workers=2", AUTH_RATE_LIMIT="10/minute", **LIMITS_ON)

    def attempt(number):  # a new connection each: the kernel spreads them over the workers
        body = {"email": f"{number}@x.io"}  # refused as incomplete, counted all the same
        return requests.post(f"{server.url}/api/auth/signin", json=body, timeout=10).status_code

    with ThreadPoolExecutor(max_workers=4) as pool:
        statuses = list(pool.map(attempt, range(20)))
    assert sorted(statuses) == [422] * 10 + [429] * 10
    workers = {line["process"] for line in server.log_lines() if line.get("route")}
    assert len(workers) == 2, "both workers answered some"


def test_memory_limits_with_several_workers_are_named_at_start(start_server):
    server = start_server("--workers=2", RATELIMIT_STORAGE_URI="memory://")
    warnings = [line for line in server.log_lines() if line["level"] == "WARNING"]
    assert "memory:// counts in each process apart: with these 2 workers" in warnings[0]["message"]


def test_forwarded_for_from_a_client_that_is_not_the_proxy_is_not_believed(start_server):
    server = start_server(AUTH_RATE_LIMIT="2/minute", TRUSTED_PROXIES="127.0.0.1", **LIMITS_ON)

    def attempt(source, forwarded_for):
        with connect(server, source) as sock:
            sock.sendall(
                b"POST /api/auth/signin HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"X-Forwarded-For: " + forwarded_for.encode() + b"\r\nContent-Length: 2\r\n\r\n{}"
            )
            return read_response(sock)[0]

    # 127.0.0.2 is not the proxy: a new forged address each time changes nothing.
    assert [attempt("127.0.0.2", f"192.0.2.{n}") for n in range(3)] == [422, 422, 429]
    # The proxy (127.0.0.1) is believed: each address it names has a bucket of its own.
    assert [attempt("127.0.0.1", f"192.0.2.{n}") for n in range(3)] == [422, 422, 422]


def test_no_log_line_can_be_forged_and_no_email_is_logged(start_server):
    server = start_server(SIGNIN_EMAIL_RATE_LIMIT="1/minute", **LIMITS_ON)
    forged = '{"logger": "taskapi.access", "status": 200, "forged": true}'
    signup = {"email": "real@example.com", "password": "correct horse"}
    requests.post(f"{server.url}/api/auth/signup", json=signup)
    for body in (
        {"email": f"victim@example.com\n{forged}", "password": "x"},
        {"email": "real@example.com", "password": "wrong one"},
        {"email": "real@example.com", "password": "wrong again"},  # over the limit
    ):
        requests.post(f"{server.url}/api/auth/signin", json=body)
    requests.get(f"{server.url}/api/%0a{forged}")
    time.sleep(0.2)
    lines = server.log_lines()  # fails if any line is not one JSON object
    assert not any(line.get("forged") for line in lines)
    answered = [line for line in lines if "status" in line and line["route"] != "/health"]
    assert [line["status"] for line in answered] == [201, 422, 401, 429, 404]
    # Only the mail itself names its recipient: without SMTP_URL, the log is where mail goes.
    assert "example.com" not in json.dumps(
        [line for line in lines if line["logger"] != "taskapi.mail"]
    )


def test_blank_lines_do_not_keep_a_connection(start_server):
    """An empty line is no request: it does not restart the clock."""
    server = start_server(CONNECTION_LIMIT="20", REQUEST_TIMEOUT="2")
    stalled = [connect(server) for _ in range(25)]
    started = time.monotonic()
    while time.monotonic() - started < 4:
        for sock in stalled:
            try:
                sock.sendall(b"\r\n")
            except OSError:
                pass  # closed: as it should be
        time.sleep(0.5)
    assert timed_health(server) < 1
    assert all(is_closed_by_server(sock) for sock in stalled)


def test_an_idle_keep_alive_connection_is_closed_after_the_request_timeout(start_server):
    server = start_server(REQUEST_TIMEOUT="2")
    with connect(server) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock)[0] == 200
        answered = time.monotonic()
        assert is_closed_by_server(sock)
        assert 2 <= time.monotonic() - answered < 2 + 2


def test_the_connection_limit_fits_the_open_files_allowed(start_server):
    server = start_server(prefix=["prlimit", "--nofile=300:300", "--"], CONNECTION_LIMIT="1000")
    warnings = [line["message"] for line in server.log_lines() if line["level"] == "WARNING"]
    assert "CONNECTION_LIMIT=1000 lowered to 100: at most 300 open files" in warnings
    stalled = [connect(server) for _ in range(150)]  # past the limit: they wait, nothing breaks
    for sock in stalled:
        sock.close()
    assert timed_health(server) < 5
    assert not any("accept" in line["message"] for line in server.log_lines())


def test_waitress_serve_says_what_it_leaves_out(tmp_path, database_url):
    log_path = tmp_path / "waitress-serve.log"
    command = [str(ROOT / ".venv/bin/waitress-serve"), "--listen=127.0.0.1:0", "wsgi:app"]
    env = {**os.environ, "DATABASE_URL": database_url, "BETTER_AUTH_SECRET": SECRET}
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stderr=log)
    try:
        for _ in range(50):
            if "run `python wsgi.py` instead" in log_path.read_text():
                break
            time.sleep(0.1)
        assert "run `python wsgi.py` instead" in log_path.read_text()
    finally:
        process.kill()
        process.wait()


def test_one_client_address_holds_at_most_its_share_of_connections(start_server):
    server = start_server("--workers=1", CONNECTIONS_PER_ADDRESS="10", TRUSTED_PROXIES="127.0.0.1")
    held = [connect(server, "127.0.0.2") for _ in range(10)]
    with connect(server, "127.0.0.2") as one_too_many:
        assert is_closed_by_server(one_too_many)
    with connect(server, "127.0.0.3") as other:  # another address, and the proxy, still served
        other.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(other)[0] == 200
    proxied = [connect(server, "127.0.0.1") for _ in range(15)]
    for sock in proxied[-3:]:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock)[0] == 200
    held.pop().close()
    time.sleep(0.5)
    with connect(server, "127.0.0.2") as again:  # a place came free
        again.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(again)[0] == 200
    for sock in held + proxied:
        sock.close()
