"""A real Prometheus (Debian's package, which `make topology` installs as root) scrapes the
metrics of a real `python wsgi.py --workers 2`, and is asked for a counter through its API."""

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

from ..conftest import get_free_port
from ..test_metrics import TASKS, list_until_both_workers_served

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
CONFIG = """
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: taskapi
    static_configs:
      - targets: ["127.0.0.1:{port}"]
"""


@pytest.fixture
def prometheus(tmp_path):
    """start(port): Prometheus scraping 127.0.0.1:port every second; its URL."""
    started = []

    def start(port):
        assert shutil.which(PROMETHEUS), "no prometheus: `make topology` installs it as root"
        (tmp_path / "prometheus.yml").write_text(CONFIG.format(port=port))
        url = f"http://127.0.0.1:{get_free_port()}"
        command = [
            PROMETHEUS,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address={url.removeprefix('http://')}",
        ]
        with open(tmp_path / "prometheus.log", "w") as log:
            started.append(subprocess.Popen(command, stdout=log, stderr=log))
        assert poll(lambda: ask(f"{url}/-/ready"), bool), "Prometheus is not ready"
        return url

    yield start
    for process in started:
        process.terminate()
        process.wait(timeout=10)


def ask(url):
    """The body of a 200, or None (refused, or not yet)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.read()
    except OSError:
        return None


def poll(answer, done, timeout=20):
    """answer() every 0.2 s until done(it) holds, or the timeout: its last value."""
    deadline = time.monotonic() + timeout
    result = answer()
    while not done(result) and time.monotonic() < deadline:
        time.sleep(0.2)
        result = answer()
    return result


def query(base, promql):
    """The one value of an instant query's result, or None while it has none."""
    body = json.loads(ask(f"{base}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"))
    results = body["data"]["result"]
    return float(results[0]["value"][1]) if results else None


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_prometheus_scrapes_the_request_count_of_both_workers(start_server, prometheus):
    port = get_free_port()
    server = start_server("--workers=2", "--threads=4", METRICS_LISTEN=f"127.0.0.1:{port}")
    base = prometheus(port)
    sent = list_until_both_workers_served(server)
    promql = f'sum(taskapi_requests_total{{route="{TASKS}",method="GET",status="200"}})'
    assert poll(lambda: query(base, promql), lambda counted: counted == sent) == sent
