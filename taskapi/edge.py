"""The service's edge, where a request is judged before any view runs: which browser origins
may call (CORS), which proxies are believed about the client's address, how often a client may
try a password, and how many password hashes run at once."""

import multiprocessing
import re
import threading
from contextlib import contextmanager

from flask import current_app, g, request
from flask_cors import CORS
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from werkzeug.middleware.proxy_fix import ProxyFix

from .api import abort

PASSWORD_ROUTES = {"auth.signup", "auth.signin", "auth.change_password", "auth.delete_account"}
TOO_MANY = "Too many attempts; wait for the time in Retry-After, then try again."
BUSY = "Too many sign-ins at once; try again in a moment."
# What a browser may send and read across origins: every header the README documents.
ALLOWED_HEADERS = ["Authorization", "Content-Type", "Idempotency-Key", "If-Match", "X-Request-ID"]
EXPOSED_HEADERS = ["X-Pagination", "ETag", "Location", "Retry-After", "X-Request-ID"]
ONE_LABEL = "[a-z0-9-]+"

# Storage and on/off come from the RATELIMIT_* settings (see config.py).
limiter = Limiter(key_func=get_remote_address, headers_enabled=True)
limit_per_address = limiter.shared_limit(
    lambda: current_app.config["AUTH_RATE_LIMIT"], scope="auth", error_message=TOO_MANY
)


def get_signin_email():
    body = request.get_json(silent=True)
    email = body.get("email") if isinstance(body, dict) else None
    return f"email:{email.lower()}" if isinstance(email, str) else get_remote_address()


limit_per_email = limiter.limit(
    lambda: current_app.config["SIGNIN_EMAIL_RATE_LIMIT"],
    key_func=get_signin_email,
    error_message=TOO_MANY,
)


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
    limiter.init_app(app)
    gate = app.extensions["password_gate"] = PasswordGate(config["BCRYPT_CONCURRENCY"])
    app.before_request(gate.admit)
    app.teardown_request(gate.release)


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


class PasswordGate:
    """bcrypt holds a core for a quarter of a second at cost 12. At most `concurrency` hashes
    run at once, across the processes forked from this one (a process-shared semaphore); a
    password request waits up to WAIT_SECONDS for its turn, then answers 503 with Retry-After.

    A waiting request must not hold one of the few threads the other routes run on: under
    wsgi.py (`serve_with`), waitress's pool grows by one thread for each admitted password
    request, for as long as it lasts. A flood then costs sleeping threads, and its clients
    wait for an answer instead of resending at once after a quick 503 (whose CPU the hashes
    and the reads needed). Past WAITING_MAX per process, a password request answers 503
    before anything is done for it."""

    WAIT_SECONDS = 5
    WAITING_MAX = 64

    def __init__(self, concurrency):
        self.slots = multiprocessing.BoundedSemaphore(concurrency)
        self.admitted = threading.BoundedSemaphore(self.WAITING_MAX)
        self.lock = threading.Lock()
        self.lent = 0
        self.server = None  # (waitress's task dispatcher, its own thread count)

    def serve_with(self, dispatcher, threads):
        """Lend threads to password requests from this waitress pool (None: stop lending)."""
        with self.lock:
            self.server = (dispatcher, threads) if dispatcher else None

    def admit(self):
        if request.endpoint in PASSWORD_ROUTES:
            if not self.admitted.acquire(blocking=False):
                refuse_busy()
            g.admitted = True
            self.lend_thread(1)

    def release(self, exception=None):
        if g.pop("admitted", False):
            self.lend_thread(-1)
            self.admitted.release()

    def lend_thread(self, change):
        with self.lock:
            self.lent += change
            if self.server:
                dispatcher, threads = self.server
                dispatcher.set_thread_count(threads + self.lent)

    @contextmanager
    def turn(self):
        """One of the `concurrency` hashing slots, or 503 after WAIT_SECONDS."""
        if not self.slots.acquire(timeout=self.WAIT_SECONDS):
            refuse_busy()
        try:
            yield
        finally:
            self.slots.release()


def refuse_busy():
    abort(503, message=BUSY, headers={"Retry-After": "1"})
