"""Fixtures: a PostgreSQL failover formation on loopback (deploy/ha.sh), whose multi-host URL
stands in for the test database of tests/conftest.py (so `app` and `start_server` use it)."""

import os
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from ..conftest import ROOT

SCRIPT = ROOT / "deploy" / "ha.sh"


@pytest.fixture(scope="session")
def formation():
    """Start the formation in a folder of its own; stop it and remove the folder, come what
    may. Its details (deploy/ha.sh's env file), and how long it took to start."""
    # Not pytest's tmp_path: as root, pg_autoctl runs as postgres and must reach its folder.
    folder = tempfile.mkdtemp(prefix="taskapi-ha-")
    env = {**os.environ, "HA_DIR": folder}
    try:
        started = time.monotonic()
        subprocess.run([SCRIPT, "start"], env=env, check=True)
        lines = Path(folder, "env").read_text().splitlines()
        yield dict(line.split("=", 1) for line in lines) | {
            "started_in": time.monotonic() - started
        }
    finally:
        subprocess.run([SCRIPT, "stop"], env=env, check=True)


@pytest.fixture(scope="session")
def database_url(formation):
    return formation["HA_DATABASE_URL"]
