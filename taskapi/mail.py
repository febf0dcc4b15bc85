"""Mail, sent off the request path through an outbox in the database.

A request that causes mail writes a row to `outbox` (queue), with whatever else it writes, and
answers.
A thread in each server process (start_sender) sends the rows: it claims one by moving its
send_after past a lease, in one statement, so no two processes send the same row; a row is
deleted once the mail server has taken it, and tried again later, with backoff, if it has not.
A slow or failing mail server never slows or fails a request, and a process killed right after
answering leaves the row for the next one. A process killed while sending, after the server took
the message but before the row was deleted, means that message is sent again: at least once.

What a row becomes is decided when it is sent, by the composer registered for its kind: so a
password-reset request does the same work whether or not the account exists, and a link's token
is never stored in the outbox, only in the mail (verification.py)."""

import json
import logging
import smtplib
import threading
import time
from email.message import EmailMessage
from urllib.parse import unquote, urlsplit

from flask import after_this_request, current_app, has_request_context
from peewee import PeeweeException

from .db import close_db
from .models import Outbox

log = logging.getLogger(__name__)

COMPOSERS = {}  # kind -> function(payload) -> (to, subject, text), or None to send nothing
LEASE_SECONDS = 120  # longer than a send may take (SMTP_TIMEOUT_SECONDS, a few round trips)
SMTP_TIMEOUT_SECONDS = 20
POLL_SECONDS = 5
MAX_ATTEMPTS = 10  # 20 s, doubling, at most an hour apart: about 2.4 hours in all
wake = threading.Event()


def composer(kind):
    """Register what a row of this kind becomes (see COMPOSERS)."""

    def register(function):
        COMPOSERS[kind] = function
        return function

    return register


def queue(kind, **payload):
    """Write mail to send; the sender thread is woken once the request's transaction is done."""
    Outbox.insert(kind=kind, payload=json.dumps(payload), send_after=time.time()).execute()
    if has_request_context():
        after_this_request(wake_sender)


def wake_sender(response):
    wake.set()
    return response


def start_sender(app):
    """The thread that sends this process's share of the outbox, for as long as it runs."""
    if not app.config["SMTP_URL"]:
        log.warning("SMTP_URL is not set: mail is written to this log instead of being sent")
    thread = threading.Thread(target=run_sender, args=(app,), name="mail-sender", daemon=True)
    thread.start()
    return thread


def run_sender(app):
    while True:
        wake.clear()  # before looking: a row queued while sending wakes the next round at once
        try:
            with app.app_context():
                send_pending()
        except PeeweeException as error:  # the database is away: try again at the next poll
            log.warning("mail: cannot read the outbox: %s", error)
        except Exception:  # a bug must not end the thread, and with it all mail from here
            log.exception("mail: the sender failed; it goes on at the next poll")
        wake.wait(POLL_SECONDS)


def send_pending():
    """Send every row that is due and unclaimed; how many were sent."""
    sent = 0
    while (row := claim_next()) is not None or is_any_due():
        if row is not None:  # None: another process took the row this one aimed at
            sent += send_row(row)
        close_db()  # no connection is held while the mail server is slow
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
    """Compose and send one claimed row; 1 if it went, 0 if it waits for another try."""
    try:
        message = compose(row)
        if message is not None:
            deliver(message)
    except Exception as error:  # the mail server's refusals, the database's, a composer's bug
        retry(row, error)
        return 0
    Outbox.delete().where(Outbox.id == row.id).execute()
    return 1


def compose(row):
    # No transaction: a token written for a message that then fails to go is never seen.
    mail = COMPOSERS[row.kind](json.loads(row.payload))
    if mail is None:
        return None
    to, subject, text = mail
    message = EmailMessage()
    message["From"] = current_app.config["MAIL_FROM"]
    message["To"] = to
    message["Subject"] = subject
    message.set_content(text, cte="7bit")  # links stay whole in the raw text (they are ASCII)
    return message


def retry(row, error):
    """Try the row again later, or give up on it after MAX_ATTEMPTS. The log names the error's
    kind and SMTP code, not its text: a refusal's text holds the recipient's address."""
    reason = f"{type(error).__name__} {getattr(error, 'smtp_code', '')}".strip()
    if row.attempts >= MAX_ATTEMPTS:
        log.error("mail %d: giving up after %d attempts: %s", row.id, row.attempts, reason)
        Outbox.delete().where(Outbox.id == row.id).execute()
        return
    delay = min(10 * 2**row.attempts, 3600)
    log.warning(
        "mail %d: attempt %d failed (%s); next in %d s", row.id, row.attempts, reason, delay
    )
    Outbox.update(send_after=time.time() + delay).where(Outbox.id == row.id).execute()


def deliver(message):
    """Hand the message to SMTP_URL's server (smtps: TLS from the start; smtp: STARTTLS when the
    server offers it); without one, write it to the log."""
    url = current_app.config["SMTP_URL"]
    if not url:
        log.info("mail to %s: %s\n%s", message["To"], message["Subject"], message.get_content())
        return
    parts = urlsplit(url)
    connect = smtplib.SMTP_SSL if parts.scheme == "smtps" else smtplib.SMTP
    with connect(parts.hostname, parts.port or 0, timeout=SMTP_TIMEOUT_SECONDS) as server:
        server.ehlo_or_helo_if_needed()
        if parts.scheme == "smtp" and server.has_extn("starttls"):
            server.starttls()  # encrypted where the server can, before any password is sent
        if parts.username:
            server.login(unquote(parts.username), unquote(parts.password or ""))
        server.send_message(message)
