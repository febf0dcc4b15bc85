"""Mail: what an outbox row of each kind becomes, and how it is sent.

Mail is queued with delivery.queue (kind, payload) in the request that causes it, and sent off
the request path by the delivery worker, which calls the composer registered for its kind. What
a row becomes is decided when it is sent: so a password-reset request does the same work
whether or not the account exists, and a link's token is never stored in the outbox, only in
the mail (verification.py)."""

import functools
import logging
import smtplib
from email.message import EmailMessage
from urllib.parse import unquote, urlsplit

from flask import current_app

from . import delivery

log = logging.getLogger(__name__)

SMTP_TIMEOUT_SECONDS = 20
MAX_ATTEMPTS = 10  # 20 s, doubling, at most an hour apart: about 2.4 hours in all


def composer(kind):
    """Register what a row of this kind becomes: function(payload) returns (to, subject,
    text), or None to send nothing."""

    def register(function):
        delivery.handler(kind, attempts=MAX_ATTEMPTS)(functools.partial(send, function))
        return function

    return register


def send(compose, payload):
    # No transaction: a token written for a message that then fails to go is never seen.
    mail = compose(payload)
    if mail is not None:
        deliver(build_message(*mail, message_id=payload.get("message_id")))


def build_message(to, subject, text, message_id=None):
    """The mail; a `message_id` fixed when it was queued makes every try of it the same
    message, which mail clients show once."""
    message = EmailMessage()
    if message_id:
        message["Message-ID"] = f"<{message_id}@taskapi>"
    message["From"] = current_app.config["MAIL_FROM"]
    message["To"] = to
    message["Subject"] = subject
    # Links stay whole in the raw text of ASCII mail; other text (a task's title) is encoded.
    message.set_content(text, cte="7bit" if text.isascii() else None)
    return message


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
