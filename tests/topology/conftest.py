"""Fixtures: the production topology (deploy/topology.sh) and an HTTPS client for its nginx."""

import http.client
import json
import os
import ssl
import subprocess
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from ..conftest import SignedUp

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "topology.sh"
PASSWORD = "correct horse"


@contextmanager
def running_topology(**settings):
    """Start the topology in a folder of its own, with these settings in taskapi's environment;
    stop it and drop its database, come what may."""
    # Not pytest's tmp_path: PgBouncer runs as nobody under root and must reach its folder.
    folder = tempfile.mkdtemp(prefix="taskapi-topology-")
    env = {**os.environ, **settings, "TOPOLOGY_DIR": folder}
    try:
        subprocess.run([SCRIPT, "start"], env=env, check=True)
        lines = Path(folder, "env").read_text().splitlines()
        yield dict(line.split("=", 1) for line in lines)
    finally:
        subprocess.run([SCRIPT, "stop"], env=env, check=True)


@pytest.fixture(scope="module")
def topology():
    with running_topology() as topology:
        yield topology


@pytest.fixture
def client(topology):
    return Client(topology["TOPOLOGY_URL"], topology["TOPOLOGY_CA"])


@dataclass
class Response:
    status: int
    headers: dict
    body: bytes

    @property
    def json(self):
        return json.loads(self.body)


class Client:
    """HTTPS to nginx, trusting the topology's own certificate (or plain HTTP to a server, with
    no `ca`); one connection per request, so threads can share it."""

    def __init__(self, url, ca=None, source="127.0.0.1"):
        """source: the client's own address (any of 127.0.0.0/8 reaches nginx on loopback)."""
        self.url = urlsplit(url)
        self.context = ssl.create_default_context(cafile=ca) if ca else None
        self.source = source

    def request(self, method, path, body=None, token=None, headers=None):
        """The response; status 0 when the connection broke before a whole one came (where a
        browser's fetch would reject with a network error)."""
        headers = dict(headers or {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if body is not None:
            headers["Content-Type"] = "application/json"
            body = json.dumps(body)
        settings = {"timeout": 30, "source_address": (self.source, 0)}
        if self.context:
            settings["context"] = self.context
        connect = http.client.HTTPSConnection if self.context else http.client.HTTPConnection
        connection = connect(self.url.hostname, self.url.port, **settings)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            return Response(response.status, get_headers(response), response.read())
        except (http.client.HTTPException, OSError) as error:
            return Response(0, {}, repr(error).encode())
        finally:
            connection.close()

    def signup(self, email):
        response = self.request("POST", "/api/auth/signup", {"email": email, "password": PASSWORD})
        assert response.status == 201, response.body
        return SignedUp(response.json["user"]["id"], email, response.json["access_token"])


def get_headers(response):
    """Lowercase names; a header sent twice reads as one, its values joined as HTTP allows."""
    headers = {}
    for name, value in response.getheaders():
        name = name.lower()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers
