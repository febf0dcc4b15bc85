"""The production entry point: `python wsgi.py --workers 2` runs waitress processes on one port,
with the service's own waitress settings (taskapi/edge.py). `make run` serves `app` from here with
Flask's development server, so both log alike."""

import argparse
import gc
import logging
import os
import signal
import socket
import sys

from dotenv import load_dotenv
from pythonjsonlogger.json import JsonFormatter

from taskapi import create_app, delivery, edge, metrics
from taskapi.config import ConfigError

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
# How long a thread may hold the GIL while another waits for it (Python's default: 5 ms). A
# request back from the database may wait that long behind threads busy in Python with other
# requests (a flood of refusals, a page of search results): at 1 ms, one user's requests delay
# another's in the same worker less (README, the hostile user), at no cost in throughput that
# `make bench` can see.
GIL_SWITCH_SECONDS = 0.001


def configure_logging():
    """One JSON object per line on stderr: whatever a message holds (a path, a header, a
    database error), it cannot start a line of its own and pass for another entry."""
    handler = logging.StreamHandler()
    fields = "{asctime}{levelname}{name}{process}{message}"
    names = {"asctime": "time", "levelname": "level", "name": "logger"}
    handler.setFormatter(JsonFormatter(fields, style="{", rename_fields=names))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    logging.captureWarnings(True)  # Python's warnings too, as JSON lines


load_dotenv()
configure_logging()
log = logging.getLogger("taskapi.serve")
try:
    app = create_app()
except ConfigError as error:
    sys.exit("\n".join(f"taskapi: cannot start: {line}" for line in str(error).splitlines()))


def main(argv=None):
    """Bind the port once, fork one waitress process per worker on it, and wait.

    SIGTERM or SIGINT goes to every worker, which finishes its requests in flight (waitress gives
    them 5 s) and exits; then this exits 0. A worker that dies on its own is not restarted: the
    others are stopped and this exits 1, for the supervisor (systemd, the container runtime) to
    restart the service, as after any other crash."""
    args = parse_args(argv)
    if app.config["RATELIMIT_STORAGE_URI"].startswith("memory:"):
        log.warning(
            "RATELIMIT_STORAGE_URI=memory:// counts in each process apart: with these %d workers "
            "(and any other process serving this database) every rate limit lets up to that many "
            "times its number through; use database:// (the default) or redis:// for limits "
            "that hold for the whole service",
            args.workers,
        )
    sock = socket.create_server((args.host, args.port), backlog=1024)
    # Signals wait until each process has its own handlers: the children's differ from ours.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    # What the import made lives as long as the process: out of the collector's sight, it is
    # not walked by each worker's full collections (26 ms each, every thread of the worker
    # waiting) nor written to by them, so the workers keep sharing its pages with this process.
    gc.freeze()
    workers = {fork_worker(sock, args.threads) for _ in range(args.workers)}
    sock.close()  # the workers hold it; nothing here accepts connections
    stopping = False

    def stop(signum=None, frame=None):
        nonlocal stopping
        stopping = True
        for pid in list(workers):
            os.kill(pid, signal.SIGTERM)

    for signum in STOP_SIGNALS:
        signal.signal(signum, stop)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    log.info("%d workers, %d threads each, on %s", args.workers, args.threads, args.listen)
    failed = not serve_metrics()
    if failed:
        stop()
    while workers:
        pid, status = os.wait()
        workers.discard(pid)
        if app.config["METRICS_LISTEN"]:
            metrics.forget_process(pid)
        code = os.waitstatus_to_exitcode(status)
        if code != 0 or not stopping:
            log.error("worker %d exited unexpectedly (status %d); stopping", pid, code)
            failed = True
            stop()
    return 1 if failed else 0


def parse_args(argv):
    parser = argparse.ArgumentParser(description="Serve taskapi: N waitress processes, one port.")
    parser.add_argument("--listen", default="127.0.0.1:8000", help="HOST:PORT (127.0.0.1:8000)")
    parser.add_argument(
        "--workers", type=int, default=len(os.sched_getaffinity(0)), help="processes (one a core)"
    )
    pool = app.config["DB_POOL_SIZE"]
    # One thread per pooled connection by default: more would open and close extra ones all day.
    parser.add_argument("--threads", type=int, default=pool, help=f"per process ({pool})")
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    if not host or not port.isdigit() or args.workers < 1 or args.threads < 1:
        parser.error("use --listen HOST:PORT, --workers and --threads of at least 1")
    args.host, args.port = host.strip("[]"), int(port)
    connections = app.config["DB_POOL_SIZE"] + app.config["DB_MAX_OVERFLOW"]
    if args.threads > connections:
        # A thread holds a pooled connection for its whole request; more threads would wait.
        parser.error(f"--threads must be at most DB_POOL_SIZE + DB_MAX_OVERFLOW ({connections})")
    return args


def fork_worker(sock, threads):
    """A child process serving `app` on the shared socket until SIGTERM; returns its pid."""
    pid = os.fork()
    if pid:
        return pid
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: parent decides
    signal.signal(signal.SIGTERM, stop_worker)
    sys.setswitchinterval(GIL_SWITCH_SECONDS)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    try:
        start_delivery()  # threads do not survive fork(): each worker starts its own
        metrics.start_sampling(app)
        server = edge.create_server(app, threads, sockets=[sock])
        server.print_listen("Serving on http://{}:{}")
        server.run()
    except SystemExit:
        pass  # stopped before it began serving
    except BaseException:
        log.exception("worker %d failed", os.getpid())
        os._exit(1)
    os._exit(0)  # never return into the parent's code


def serve_metrics():
    """/metrics on METRICS_LISTEN (if set) from a thread of this process, which adds up what
    every worker counted (taskapi/metrics.py); False if it cannot listen there."""
    listen = app.config["METRICS_LISTEN"]
    if listen:
        try:
            metrics.start_server(*listen)
        except OSError as error:
            log.error("cannot serve metrics on %s:%d: %s", *listen, error)
            return False
        log.info("metrics on http://%s:%d/metrics", *listen)
    return True


def start_delivery():
    """This process's delivery worker: it sends mail and calls webhooks (taskapi/delivery.py)."""
    if not app.config["SMTP_URL"]:
        log.warning("SMTP_URL is not set: mail is written to this log instead of being sent")
    delivery.start_worker(app)


def stop_worker(signum, frame):
    """waitress stops on SystemExit: it closes the socket and lets busy threads finish."""
    signal.signal(signum, signal.SIG_IGN)
    app.extensions["password_gate"].serve_with(None, 0)  # its pool is shrinking to nothing
    raise SystemExit


if __name__ == "__main__":
    sys.exit(main())
# Imported rather than run (`flask run`, i.e. `make run`, or another server): this process serves
# requests itself, so it makes deliveries too. Run as a script, main() never returns here
# (sys.exit), and each forked worker starts its own delivery worker. So with metrics: this
# process counts, and serves them.
start_delivery()
metrics.start_sampling(app)
if not serve_metrics():
    sys.exit("taskapi: cannot start: METRICS_LISTEN is not free")
if sys.argv and os.path.basename(sys.argv[0]) in {"waitress-serve", "gunicorn", "uwsgi"}:
    log.warning(
        "%s serves taskapi without its own server settings (body and connection limits, request "
        "timeout, proxy headers): run `python wsgi.py` instead",
        os.path.basename(sys.argv[0]),
    )
