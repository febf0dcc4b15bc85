"""The service's edge, where a request is judged before any view runs: which browser origins
may call (CORS), which proxies are believed about the client's address, the rate limits
(ratelimits.py), and the waitress server every way of serving uses: body and connection
limits, request timeout, its own errors in the API's shape."""

import collections
import ipaddress
import json
import logging
import re
import resource
import time

import waitress
from flask_cors import CORS
from waitress.channel import HTTPChannel
from waitress.task import ErrorTask
from werkzeug.middleware.proxy_fix import ProxyFix

from . import ratelimits
from .api import TOO_LARGE

log = logging.getLogger(__name__)

# What a browser may send and read across origins: every header the README documents.
ALLOWED_HEADERS = ["Authorization", "Content-Type", "Idempotency-Key", "If-Match", "X-Request-ID"]
EXPOSED_HEADERS = ["X-Pagination", "ETag", "Location", "Retry-After", "X-Request-ID"]
ONE_LABEL = "[a-z0-9-]+"
MAX_HEADER_BYTES = 32 * 1024  # a few tokens' worth; nginx's own limit is lower
# A connection whose answer has not been read for this long is closed (Channel closes the ones
# that keep the server waiting for a request).
IDLE_SECONDS = 30
SPARE_FILES = 200  # open files kept for all but connections: the database pool, logs, pipes
WAITRESS_ERRORS = {
    400: "The request is malformed.",
    413: TOO_LARGE,
    431: "The request headers are too large.",
}
ERROR_HEADERS = [
    ("Content-Type", "application/json"),
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
    ("Vary", "Origin"),
]


def init_app(app):
    config = app.config
    origins = [get_origin_pattern(origin) for origin in config["CORS_ORIGINS"]]
    app.extensions["cors"] = (origins, config["CORS_ALLOW_CREDENTIALS"])  # for create_server
    CORS(
        app,
        origins=origins,
        supports_credentials=config["CORS_ALLOW_CREDENTIALS"],
        allow_headers=ALLOWED_HEADERS,
        expose_headers=EXPOSED_HEADERS,
        max_age=600,
        vary_header=False,  # api.finish_request says Vary: Origin on every response
    )
    trust_proxies(app, config["TRUSTED_PROXIES"])
    ratelimits.init_app(app)


def get_origin_pattern(origin):
    """The origin matched whole, ignoring case; in `https://*.example.com` the * stands for one
    label. flask-cors would take such an entry as an unanchored regular expression, which
    `https://xexample.com.evil.net` matches."""
    return re.compile(re.escape(origin).replace(r"\*", ONE_LABEL, 1) + r"\Z", re.IGNORECASE)


def trust_proxies(app, proxies):
    if isinstance(proxies, int) and proxies:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies)
    elif proxies:
        app.wsgi_app = ProxyFixFrom(app.wsgi_app, proxies)


class ProxyFixFrom(ProxyFix):
    """Trusts X-Forwarded-For/-Proto only on requests coming from one of the given proxies
    (addresses or networks)."""

    def __init__(self, app, proxies):
        super().__init__(app, x_for=1, x_proto=1)
        self.proxies = proxies

    def __call__(self, environ, start_response):
        if is_in(environ.get("REMOTE_ADDR", ""), self.proxies):
            return super().__call__(environ, start_response)
        return self.app(environ, start_response)


def is_in(address, networks):
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(parsed in network for network in networks)


def get_server_settings(config, threads):
    """waitress's settings for this service: the same wherever it is served (wsgi.py, the
    container, the topology, the tests), so what is tested is what runs."""
    return {
        "threads": threads,
        "ident": "taskapi",
        # waitress answers 413 at once for a body at or over its limit, before reading it:
        # Flask's MAX_CONTENT_LENGTH alone would refuse it only after waitress buffered it.
        "max_request_body_size": config["MAX_CONTENT_LENGTH"] + 1,
        "max_request_header_size": MAX_HEADER_BYTES,
        "connection_limit": fit_connection_limit(config["CONNECTION_LIMIT"]),
        "channel_timeout": IDLE_SECONDS,
        "cleanup_interval": IDLE_SECONDS,
        "asyncore_use_poll": True,  # select() cannot watch more than 1,024 connections
        # waitress would drop X-Forwarded-* before the app sees them: trust_proxies decides.
        "clear_untrusted_proxy_headers": False,
    }


def create_server(app, threads, **listen):
    """A waitress server for `app` on one listen address (host and port, or one socket), with
    its password gate lending threads from it."""
    settings = get_server_settings(app.config, threads)
    server = waitress.create_server(app, **settings, **listen)
    if not hasattr(server, "channel_class"):
        raise ValueError("one listen address per server: each needs the Channel below")
    server.channel_class = Channel
    server.request_timeout = app.config["REQUEST_TIMEOUT"]
    server.cors = app.extensions["cors"]
    server.connections = collections.Counter()  # open connections by client address
    proxies = app.config["TRUSTED_PROXIES"]
    # Behind proxies given only by their count, any address may be one: then no cap.
    counted = isinstance(proxies, int) and proxies
    server.per_address = None if counted else app.config["CONNECTIONS_PER_ADDRESS"]
    server.proxies = () if isinstance(proxies, int) else proxies
    app.extensions["password_gate"].serve_with(server.task_dispatcher, threads)
    return server


def fit_connection_limit(limit):
    """The connection limit, within what the process may open: its soft limit on open files is
    raised as far as the hard one allows, and a few hundred are kept for the rest (the database
    pool, logs). Past it, waitress's accept() would fail in a loop instead of waiting."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = limit + SPARE_FILES
    if soft != resource.RLIM_INFINITY and soft < wanted:
        soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    if soft != resource.RLIM_INFINITY and soft < wanted:
        log.warning(
            "CONNECTION_LIMIT=%d lowered to %d: at most %d open files",
            limit,
            soft - SPARE_FILES,
            soft,
        )
        return max(1, soft - SPARE_FILES)
    return limit


class JSONErrorTask(ErrorTask):
    """waitress's own error answer in the API's shape, with the CORS headers an allowed origin
    needs to read it."""

    def execute(self):
        error = self.request.error
        message = WAITRESS_ERRORS.get(error.code, f"{error.reason}.")
        body = {"code": error.code, "status": error.reason, "message": message, "detail": message}
        encoded = json.dumps(body).encode()
        self.status = f"{error.code} {error.reason}"
        self.response_headers.extend(ERROR_HEADERS)
        origin = self.request.headers.get("ORIGIN", "")
        origins, credentials = self.channel.server.cors
        if any(pattern.match(origin) for pattern in origins):
            self.response_headers.append(("Access-Control-Allow-Origin", origin))
            if credentials:
                self.response_headers.append(("Access-Control-Allow-Credentials", "true"))
        self.set_close_on_finish()
        self.content_length = len(encoded)
        self.write(encoded)


class Channel(HTTPChannel):
    """waitress's connection, with three changes:
    - each request must arrive whole within the server's request_timeout of the moment the
      server is ready for it (the connection opened, or the last answer was sent); otherwise the
      connection is closed. waitress alone closes only connections idle for channel_timeout, so
      clients that never finish a request (or send blank lines, which are no request) would hold
      the connection limit;
    - one client address holds at most CONNECTIONS_PER_ADDRESS of them (the trusted proxies
      any number), so that one client cannot hold them all;
    - what waitress refuses by itself (a body over the limit, headers too large or malformed)
      is answered in the API's JSON error shape."""

    error_task_class = JSONErrorTask

    def __init__(self, server, sock, addr, adj, map=None):
        super().__init__(server, sock, addr, adj, map)
        self.waiting_since = time.monotonic()
        self.peer = addr[0]
        server.connections[self.peer] += 1
        if self.is_one_too_many():
            self.will_close = True  # closed by the loop before anything is read from it

    def is_one_too_many(self):
        limit = self.server.per_address
        if limit is None or is_in(self.peer, self.server.proxies):
            return False
        return self.server.connections[self.peer] > limit

    def del_channel(self, map=None):
        if self.peer is not None:  # once, however often it is closed
            self.server.connections[self.peer] -= 1
            if not self.server.connections[self.peer]:
                del self.server.connections[self.peer]
            self.peer = None
        super().del_channel(map)

    def received(self, data):
        queued = len(self.requests)
        result = super().received(data)
        if len(self.requests) > queued:
            self.waiting_since = None  # a whole request: it is being answered
        return result

    def readable(self):
        """Called by waitress's loop at least once a second, for every connection."""
        if self.requests or self.total_outbufs_len:
            self.waiting_since = None
        elif self.waiting_since is None:
            self.waiting_since = time.monotonic()  # answered: the next request's turn
        elif time.monotonic() - self.waiting_since > self.server.request_timeout:
            self.will_close = True  # writable() is then true, and the loop closes it
        return super().readable()
