"""The service's edge, where a request is judged before any view runs: which browser origins
may call (CORS), which proxies are believed about the client's address, the rate limits
(ratelimits.py), and the waitress server every way of serving uses: body and connection
limits, request timeout, its own errors in the API's shape."""

import functools
import json
import re
import time

import waitress
from flask_cors import CORS
from waitress.channel import HTTPChannel
from waitress.task import ErrorTask
from werkzeug.middleware.proxy_fix import ProxyFix

from . import ratelimits

# What a browser may send and read across origins: every header the README documents.
ALLOWED_HEADERS = ["Authorization", "Content-Type", "Idempotency-Key", "If-Match", "X-Request-ID"]
EXPOSED_HEADERS = ["X-Pagination", "ETag", "Location", "Retry-After", "X-Request-ID"]
ONE_LABEL = "[a-z0-9-]+"
MAX_HEADER_BYTES = 32 * 1024  # a few tokens' worth; nginx's own limit is lower
# Keep-alive connections idle this long are closed; nginx's upstream keepalive_timeout is
# shorter, so nginx never sends a request on a connection waitress is closing.
IDLE_SECONDS = 30
WAITRESS_ERRORS = {
    400: "The request is malformed.",
    413: "The request body is too large.",
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
    CORS(
        app,
        origins=[get_origin_pattern(origin) for origin in config["CORS_ORIGINS"]],
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
    """Trusts X-Forwarded-For/-Proto only on requests coming from one of the given proxies."""

    def __init__(self, app, proxies):
        super().__init__(app, x_for=1, x_proto=1)
        self.proxies = proxies

    def __call__(self, environ, start_response):
        if environ.get("REMOTE_ADDR") in self.proxies:
            return super().__call__(environ, start_response)
        return self.app(environ, start_response)


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
        "connection_limit": config["CONNECTION_LIMIT"],
        "channel_timeout": IDLE_SECONDS,
        "cleanup_interval": IDLE_SECONDS,
        "asyncore_use_poll": True,  # select() cannot watch more than 1,024 connections
        # waitress would drop X-Forwarded-* before the app sees them: trust_proxies decides.
        "clear_untrusted_proxy_headers": False,
    }


def create_server(app, threads, **listen):
    """A waitress server for `app` (listen: host and port, or sockets), and its password gate
    lending threads from it. Requests must arrive whole within REQUEST_TIMEOUT."""
    server = waitress.create_server(app, **get_server_settings(app.config, threads), **listen)
    server.channel_class = Channel
    server.request_timeout = app.config["REQUEST_TIMEOUT"]
    server.origins = [get_origin_pattern(origin) for origin in app.config["CORS_ORIGINS"]]
    app.extensions["password_gate"].serve_with(server.task_dispatcher, threads)
    return server


class Channel(HTTPChannel):
    """waitress's connection, with two changes:
    - a request must arrive whole within the server's request_timeout of its first byte (of
      the connection's opening, for its first request); otherwise the connection is closed.
      waitress alone closes only connections idle for channel_timeout, so clients that open
      connections and never finish a request would hold the connection limit;
    - what waitress refuses by itself (a body over the limit, headers too large or malformed)
      is answered in the API's JSON error shape."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.pending_since = time.monotonic()
        self.error_task_class = functools.partial(JSONErrorTask, origins=self.server.origins)

    def received(self, data):
        pending = self.request
        result = super().received(data)
        if self.request is None:
            self.pending_since = None
        elif self.request is not pending:
            self.pending_since = time.monotonic()
        return result

    def readable(self):
        """Called by waitress's loop at least once a second, for every connection."""
        if self.pending_since is not None and not self.requests:
            if time.monotonic() - self.pending_since > self.server.request_timeout:
                self.will_close = True  # writable() is then true, and the loop closes it
        return super().readable()


class JSONErrorTask(ErrorTask):
    """waitress's own error answer in the API's shape, with CORS for an allowed origin (else
    a browser could not read it)."""

    def __init__(self, channel, request, origins):
        super().__init__(channel, request)
        self.origins = origins

    def execute(self):
        error = self.request.error
        message = WAITRESS_ERRORS.get(error.code, f"{error.reason}.")
        body = {"code": error.code, "status": error.reason, "message": message, "detail": message}
        encoded = json.dumps(body).encode()
        self.status = f"{error.code} {error.reason}"
        self.response_headers.extend(ERROR_HEADERS)
        origin = self.request.headers.get("ORIGIN", "")
        if any(pattern.match(origin) for pattern in self.origins):
            self.response_headers.append(("Access-Control-Allow-Origin", origin))
        self.set_close_on_finish()
        self.content_length = len(encoded)
        self.write(encoded)
