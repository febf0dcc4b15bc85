"""Prometheus metrics, off unless METRICS_LISTEN is set: every process of the service writes
what it counts to files of its own (prometheus_client's multiprocess mode), and the process
serving METRICS_LISTEN (wsgi.py's parent) adds them all up at each scrape."""

import atexit
import functools
import os
import shutil
import tempfile
import threading
import time

from flask import g, request

from .db import database, is_postgres

# Any other method (a client may send any word) is counted as "other": one series per word
# would let a client grow the metrics without bound.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"  # the route of a request no URL rule matched (404, 405)
# A read takes a few milliseconds, a sign-in about a quarter of a second, the slowest 10 s.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
# The pool's connections are sampled this often rather than written at each checkout: that
# would cost every request two more file writes, for a gauge Prometheus reads every 15 s or so.
SAMPLE_SECONDS = 1.0


def init_app(app):
    if app.config["METRICS_LISTEN"] is None:
        return
    metrics = get_metrics()
    app.extensions["metrics"] = metrics
    app.extensions["password_gate"].metrics = metrics
    if get_pool() is not None:
        get_pool().metrics = metrics
    app.after_request(metrics.count_request)


@functools.cache
def get_client():
    """prometheus_client in multiprocess mode, with a fresh directory for this process and the
    workers it forks, removed when it exits. The library chooses its mode once, when first
    imported, from PROMETHEUS_MULTIPROC_DIR: so it is imported here, once that is set."""
    directory = tempfile.mkdtemp(prefix="taskapi-metrics-")
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    import prometheus_client.multiprocess

    if not prometheus_client.values.ValueClass._multiprocess:
        raise RuntimeError("prometheus_client was imported before taskapi.metrics could set it up")
    return prometheus_client


@functools.cache
def get_metrics():
    """This process tree's metrics: made once, before the workers are forked."""
    return Metrics(get_client())


def start_server(host, port):
    """Serve every process's metrics, added up, on host:port from a thread of this process."""
    client = get_client()
    registry = client.CollectorRegistry()
    client.multiprocess.MultiProcessCollector(registry)
    client.start_http_server(port, host, registry)


def start_sampling(app):
    """A thread of this process writing its pool's connections to the gauges every second
    (threads do not survive fork(): each worker starts its own)."""
    metrics = app.extensions.get("metrics")
    pool = get_pool()
    if metrics is not None and pool is not None:
        threading.Thread(target=metrics.sample_forever, args=(pool,), daemon=True).start()


def get_pool():
    """PostgreSQL's pool; None on SQLite, which has none."""
    return database.obj if is_postgres() else None


def forget_process(pid):
    """A worker that exited: its gauges no longer count (its counters still do)."""
    get_client().multiprocess.mark_process_dead(pid)


class Metrics:
    """Every metric the service exports, as prometheus_client objects."""

    def __init__(self, client):
        def gauge(name, text):  # the sum over the processes alive
            return client.Gauge(name, text, registry=None, multiprocess_mode="livesum")

        def counter(name, text, labels=()):
            return client.Counter(name, text, labels, registry=None)

        self.requests = counter(
            "taskapi_requests",
            "Requests answered, by route template, method and status.",
            ["route", "method", "status"],
        )
        self.latency = client.Histogram(
            "taskapi_request_duration_seconds",
            "Time from the request's first hook to its answer, by route template and method.",
            ["route", "method"],
            registry=None,
            buckets=LATENCY_BUCKETS,
        )
        self.connections_in_use = gauge(
            "taskapi_db_connections_in_use", "PostgreSQL connections a request holds."
        )
        self.connections_idle = gauge(
            "taskapi_db_connections_idle", "PostgreSQL connections kept open in the pools."
        )
        self.connection_waits = counter(
            "taskapi_db_connection_waits", "Requests that found every pooled connection taken."
        )
        self.connection_timeouts = counter(
            "taskapi_db_connection_wait_timeouts",
            "Requests that waited for a pooled connection in vain (answered 503).",
        )
        self.connect_failures = counter(
            "taskapi_db_connect_failures", "New PostgreSQL connections that failed to open."
        )
        self.password_waiting = gauge(
            "taskapi_password_waiting", "Password requests waiting now for a bcrypt slot."
        )
        self.password_waits = counter(
            "taskapi_password_waits", "Password requests that found every bcrypt slot taken."
        )
        self.password_refused = counter(
            "taskapi_password_refused",
            "Password requests answered 503: too many waiting (busy) or none came free (timeout).",
            ["reason"],
        )
        self.series = {}  # (route, method, status): its counter and histogram, found once

    def count_request(self, response):
        """By the route's template, never the path: each id would make series of its own."""
        route = request.url_rule.rule if request.url_rule else UNMATCHED
        method = request.method if request.method in METHODS else "other"
        key = (route, method, response.status_code)
        if key not in self.series:
            count = self.requests.labels(*key)
            self.series[key] = (count, self.latency.labels(route, method))
        count, latency = self.series[key]
        count.inc()
        latency.observe(time.perf_counter() - g.started)
        return response

    def sample_forever(self, pool):
        while True:
            self.sample(pool)
            time.sleep(SAMPLE_SECONDS)

    def sample(self, pool):
        in_use, idle = pool.get_connection_counts()
        self.connections_in_use.set(in_use)
        self.connections_idle.set(idle)
