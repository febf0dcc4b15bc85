"""Rate limits and load shedding on the password routes: how often a client may try a password
(per address, per account, per device) and how many bcrypt hashes run at once. The counts live
in the database by default, so a limit holds for every process of the service together."""

import functools
import hashlib
import hmac
import ipaddress
import itertools
import math
import multiprocessing
import secrets
import threading
import time
from contextlib import contextmanager

from flask import current_app, g, request
from itsdangerous import BadData, URLSafeTimedSerializer
from limits import parse_many
from limits.storage import Storage, storage_from_string
from limits.strategies import FixedWindowRateLimiter
from peewee import Case, PeeweeException

from .api import abort
from .db import ping
from .models import RateLimit

PASSWORD_ROUTES = {
    "accounts.signup",
    "accounts.signin",
    "accounts.change_password",
    "verification.reset_password",
    "auth.delete_account",
}
TOO_MANY = "Too many attempts; wait for the time in Retry-After, then try again."
BUSY = "Too many sign-ins at once; try again in a moment."
DEVICE_TOKEN_SECONDS = 365 * 86400
REFUSALS_KEPT = 10_000


def init_app(app):
    storage = storage_from_string(app.config["RATELIMIT_STORAGE_URI"])
    app.extensions["rate_limiter"] = FixedWindowRateLimiter(storage)
    app.extensions["refused_until"] = {}  # key: when the window that refused it ends (see hit)
    gate = app.extensions["password_gate"] = PasswordGate(app.config["BCRYPT_CONCURRENCY"])
    app.before_request(gate.admit)
    app.teardown_request(gate.release)


def get_client_key():
    """The client's address, as trust_proxies decided it; an IPv6 client counts by its /64,
    the block one subscriber gets, or it could try from a new address every time."""
    address = request.remote_addr or ""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if parsed.version == 6 and parsed.ipv4_mapped:
        return str(parsed.ipv4_mapped)  # an IPv4 client of a dual-stack socket
    if parsed.version == 6:
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return address


def limit_per_address(view):
    """AUTH_RATE_LIMIT: the attempts one client may make at the routes that check a password
    or a mailed link, all of them together."""

    @functools.wraps(view)
    def limited(*args, **kwargs):
        hit(f"auth:{get_client_key()}", current_app.config["AUTH_RATE_LIMIT"])
        return view(*args, **kwargs)

    return limited


def limit_signin(email, device):
    """Counts a sign-in attempt on one account, or answers 429.

    A device that signed in to the account before (it sends the device_token it was given, see
    read_device_token) has a bucket of its own; every other attempt on the account shares one.
    So guessing one account's password from many addresses stays slow, and the owner's devices
    are not locked out by a stranger who fills the shared bucket (OWASP's device cookies)."""
    config = current_app.config
    if device:
        hit(f"signin-device:{device}", config["SIGNIN_DEVICE_RATE_LIMIT"])
    else:
        hit(f"signin-account:{get_digest(email.lower())}", config["SIGNIN_EMAIL_RATE_LIMIT"])


def get_digest(text):
    """A keyed digest: the counters, and the logs, never hold an email address."""
    secret = current_app.config["BETTER_AUTH_SECRET"].encode()
    key = hmac.new(secret, b"taskapi rate-limit keys", hashlib.sha256).digest()
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()[:32]


def issue_device_token(user, device=None):
    """A token naming this device (a new one unless given) for this user and password."""
    device = {"device": device or secrets.token_urlsafe(12), "account": get_account(user)}
    return get_device_serializer().dumps(device)


def read_device_token(token, user):
    """The device's id, if the token was issued to this user while the password was the same
    (a new password ends every device's standing), and not over a year ago."""
    if not token or user is None or user.password_hash is None:
        return None
    try:
        device = get_device_serializer().loads(token, max_age=DEVICE_TOKEN_SECONDS)
    except BadData:
        return None
    if not isinstance(device, dict) or device.get("account") != get_account(user):
        return None
    return device.get("device")


def get_account(user):
    return get_digest(f"{user.id}:{user.password_hash}")


def get_device_serializer():
    return URLSafeTimedSerializer(current_app.config["BETTER_AUTH_SECRET"], salt="device")


def hit(key, limits, message=TOO_MANY):
    """One attempt against each of the limits ("10/minute;100/day"), or 429 with Retry-After.

    Windows are fixed: a key refused once is refused until its window ends. This process
    remembers that, and refuses the key's next attempts without asking the storage, so a
    client hammering past its limit costs little more than checking its token."""
    if not current_app.config["RATELIMIT_ENABLED"]:
        return
    refuse_if_remembered(key, message)
    refused_until = current_app.extensions["refused_until"]
    limiter = current_app.extensions["rate_limiter"]
    for limit in parse_many(limits):
        if not limiter.hit(limit, key):
            reset = limiter.get_window_stats(limit, key).reset_time
            if len(refused_until) >= REFUSALS_KEPT:
                refused_until.clear()  # forgetting only costs a storage hit per key
            refused_until[key] = reset
            refuse(reset, message)


def refuse_if_remembered(key, message):
    """429 if this process refused the key in a window that has not ended (see hit)."""
    until = current_app.extensions["refused_until"].get(key, 0)
    if until > time.time():
        refuse(until, message)


def refuse(reset, message):
    retry_after = max(1, math.ceil(reset - time.time()))
    abort(429, message=message, headers={"Retry-After": str(retry_after)})


class DatabaseStorage(Storage):
    """Rate-limit counters in the service's own database (`database://`, the default), so that
    every process, and every host on the same database, counts together with nothing more to
    run. Fixed windows: a key's hits, and the moment its window ends, bumped in one statement."""

    STORAGE_SCHEME = ["database"]
    PURGE_EVERY = 1000  # increments per process between deletions of ended windows

    def __init__(self, uri=None, wrap_exceptions=False, **options):
        super().__init__(uri, wrap_exceptions, **options)
        self.increments = itertools.count(1)

    @property
    def base_exceptions(self):
        return PeeweeException

    def incr(self, key, expiry, amount=1):
        now = time.time()
        if next(self.increments) % self.PURGE_EVERY == 0:
            RateLimit.delete().where(RateLimit.expires_at <= now).execute()
        ended = RateLimit.expires_at <= now
        query = (
            RateLimit.insert(key=key, hits=amount, expires_at=now + expiry)
            .on_conflict(
                conflict_target=[RateLimit.key],
                update={
                    RateLimit.hits: Case(None, [(ended, amount)], RateLimit.hits + amount),
                    RateLimit.expires_at: Case(None, [(ended, now + expiry)], RateLimit.expires_at),
                },
            )
            .returning(RateLimit.hits)
        )
        return query.tuples().execute()[0][0]

    def get(self, key):
        row = self.get_window(key)
        return row.hits if row else 0

    def get_expiry(self, key):
        row = self.get_window(key)
        return row.expires_at if row else time.time()

    def get_window(self, key):
        now = time.time()
        return RateLimit.get_or_none(RateLimit.key == key, RateLimit.expires_at > now)

    def check(self):
        ping()
        return True

    def reset(self):
        return RateLimit.delete().execute()

    def clear(self, key):
        RateLimit.delete().where(RateLimit.key == key).execute()


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
    metrics = None  # a metrics.Metrics, when METRICS_LISTEN is set

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
                self.refuse("busy")
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
        if not self.slots.acquire(block=False) and not self.wait_for_slot():
            self.refuse("timeout")
        try:
            yield
        finally:
            self.slots.release()

    def wait_for_slot(self):
        if self.metrics is None:
            return self.slots.acquire(timeout=self.WAIT_SECONDS)
        self.metrics.password_waits.inc()
        with self.metrics.password_waiting.track_inprogress():
            return self.slots.acquire(timeout=self.WAIT_SECONDS)

    def refuse(self, reason):
        """503 with Retry-After: too many waiting in this process (busy), or no slot came free
        in time (timeout)."""
        if self.metrics is not None:
            self.metrics.password_refused.labels(reason).inc()
        abort(503, message=BUSY, headers={"Retry-After": "1"})
