"""Deliveries made off the request path (mail, webhook calls), through an outbox in the database.

A request that causes a delivery writes a row to `outbox` (queue), with whatever else it writes,
and answers. A thread in each server process (start_worker) works in rounds, at most
POLL_SECONDS apart and at once when a request queued something: first the functions registered
with every_round (which may queue rows of their own), then every row that is due. It claims a
row by moving its send_after past a lease, in one statement, so no two processes deliver the
same row; the row's handler delivers it, and the row is deleted, or tried again later, with
backoff, until its kind's number of attempts is spent. A slow or failing receiver never slows
or fails a request, and a process killed right after answering leaves the row for the next
one. A process killed while delivering, after the receiver took the delivery but before the row
was deleted, means it is made again once the lease has run out: at least once, never lost."""

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from flask import after_this_request, g, has_request_context
from peewee import PeeweeException

from .db import close_db
from .models import Outbox

log = logging.getLogger(__name__)

# Longer than a delivery takes (a mail server's or a receiver's timeouts are 20 s and 10 s a
# step), and short enough that a reminder whose delivery a killed process left half done still
# arrives within a minute: the next process takes it up once the lease has run out.
LEASE_SECONDS = 45
POLL_SECONDS = 5
DEFAULT_ATTEMPTS = 10  # for a row of a kind this process has no handler for
wake = threading.Event()


@dataclass(frozen=True)
class Handler:
    deliver: Callable[[dict], None]
    attempts: int


HANDLERS: dict[str, Handler] = {}
ROUND_FUNCTIONS: list[Callable[[], object]] = []


class Failed(Exception):
    """A delivery that did not go, with a reason that may be logged (no address, no secret)."""


def handler(kind, attempts):
    """Register how a row of this kind is delivered: function(payload) returns once it is
    delivered, or raises to be tried again, up to `attempts` tries in all."""

    def register(function):
        HANDLERS[kind] = Handler(function, attempts)
        return function

    return register


def every_round(function):
    """Call function() at the start of every round of every process's worker, in an app
    context: to queue what has come due, say. Rounds are at most POLL_SECONDS apart."""
    ROUND_FUNCTIONS.append(function)
    return function


def queue(kind, **payload):
    """Write a delivery in the caller's transaction; the worker is woken once the request is
    done. A payload's `webhook_id` is kept in a column too: the row goes with its webhook."""
    Outbox.insert(
        kind=kind,
        payload=json.dumps(payload),
        send_after=time.time(),
        webhook=payload.get("webhook_id"),
    ).execute()
    if has_request_context() and "wake_worker" not in g:
        g.wake_worker = True
        after_this_request(wake_worker)


def wake_worker(response):
    wake.set()
    return response


def start_worker(app):
    """The thread that makes this process's share of the deliveries, for as long as it runs."""
    thread = threading.Thread(target=run_worker, args=(app,), name="delivery", daemon=True)
    thread.start()
    return thread


def run_worker(app):
    while True:
        wake.clear()  # before looking: a row queued during the round wakes the next one at once
        with app.app_context():
            run_round()
        wake.wait(POLL_SECONDS)


def run_round():
    """The every_round functions, then every row that is due; how many rows were delivered."""
    for function in ROUND_FUNCTIONS:
        guarded(function)
    return guarded(send_pending) or 0


def guarded(function):
    """function(), whose failure is logged and waits for the next round."""
    try:
        return function()
    except PeeweeException as error:  # the database is away: try again at the next poll
        log.warning("delivery: %s cannot reach the database: %s", function.__name__, error)
    except Exception:  # a bug must not end the thread, and with it every delivery from here
        log.exception("delivery: %s failed; it goes on at the next round", function.__name__)
    finally:
        close_db()
    return None


def send_pending():
    """Deliver every row that is due and unclaimed; how many were delivered."""
    sent = 0
    while (row := claim_next()) is not None or is_any_due():
        if row is not None:  # None: another process took the row this one aimed at
            sent += send_row(row)
        close_db()  # no connection is held while a receiver is slow
    return sent


def is_any_due():
    return Outbox.select().where(Outbox.send_after <= time.time()).exists()


def claim_next():
    """The next due row, claimed for LEASE_SECONDS. A process that lost the race finds the
    row's send_after moved on when PostgreSQL re-checks the WHERE, and updates nothing."""
    now = time.time()
    due = (Outbox.send_after <= now) & Outbox.id.in_(
        Outbox.select(Outbox.id).where(Outbox.send_after <= now).order_by(Outbox.id).limit(1)
    )
    claim = Outbox.update(send_after=now + LEASE_SECONDS, attempts=Outbox.attempts + 1)
    rows = list(claim.where(due).returning(Outbox).execute())
    return rows[0] if rows else None


def send_row(row):
    """Deliver one claimed row; 1 if it went, 0 if it waits for another try."""
    found = HANDLERS.get(row.kind)
    try:
        if found is None:
            raise Failed(f"no handler for {row.kind!r} in this process")
        found.deliver(json.loads(row.payload))
    except Exception as error:  # the receiver's refusals, the database's, a handler's bug
        retry(row, found.attempts if found else DEFAULT_ATTEMPTS, error)
        return 0
    Outbox.delete().where(Outbox.id == row.id).execute()
    return 1


def retry(row, attempts, error):
    """Try the row again later, or give up on it after `attempts`. The log names the error's
    kind (and SMTP code), not its text, which may hold a recipient's address; a Failed's text
    is written to be logged."""
    reason = f"{type(error).__name__} {getattr(error, 'smtp_code', '')}".strip()
    if isinstance(error, Failed):
        reason = str(error)
    if row.attempts >= attempts:
        log.error("%s %d: giving up after %d attempts: %s", row.kind, row.id, row.attempts, reason)
        Outbox.delete().where(Outbox.id == row.id).execute()
        return
    delay = get_delay(row.attempts)
    log.warning(
        "%s %d: attempt %d failed (%s); next in %d s", row.kind, row.id, row.attempts, reason, delay
    )
    Outbox.update(send_after=time.time() + delay).where(Outbox.id == row.id).execute()


def get_delay(attempts):
    """Seconds to wait after `attempts` failed tries: 20, 40, 80... at most an hour."""
    return min(10 * 2**attempts, 3600)
