"""The webhooks blueprint: URLs a user's events are POSTed to, signed, through the outbox.

A webhook's URL must be http or https, without a user name or password, on a host whose every
address is public: loopback, private, link-local, CGNAT, multicast, reserved and unspecified
addresses are refused (OWASP API7, server-side request forgery), also when written in another
spelling (2130706433 is 127.0.0.1) or inside an IPv6 address (::ffff:10.0.0.1). The check runs
when the webhook is made and again at each delivery, as DNS can change; the delivery connects
to the address it has just checked, never to a name resolved again, so a name rebound in
between cannot take it elsewhere (HTTPS still verifies the certificate for the name).
WEBHOOK_ALLOW_PRIVATE=true lifts the address rule, for tests and closed networks."""

import hashlib
import hmac
import ipaddress
import json
import secrets
import socket
import threading
import uuid
from urllib.parse import urlsplit

from flask import current_app, g, url_for
from flask.views import MethodView
from marshmallow import Schema, ValidationError, fields, validate
from urllib3.connection import HTTPConnection, HTTPSConnection

from . import delivery
from .api import Blueprint, abort
from .db import close_db, database
from .models import User, Webhook, utcnow
from .ordering import lock_user
from .schemas import BIGINT_MAX, Text

blp = Blueprint(
    "webhooks",
    __name__,
    url_prefix="/api/users/<user_id>/webhooks",
    description="URLs the user's events are POSTed to, as JSON signed with the webhook's secret "
    "(see the README, Webhooks). Also served without the `/users` segment "
    "(`/api/{user_id}/webhooks...`).",
)
EVENTS = ("reminder.fired", "task.created", "task.updated", "task.completed", "task.deleted")
MAX_WEBHOOKS = 10  # per user
MAX_URL_LENGTH = 2048
ATTEMPTS = 8  # 20 s after the first try, doubling: the last about 42 minutes after the first
TIMEOUT_SECONDS = 10  # to connect, and for each read of the answer
# For the whole call: a receiver that answers a byte at a time is cut off then, and the
# delivery thread goes on to the others' deliveries (well within delivery.LEASE_SECONDS).
DEADLINE_SECONDS = 25
PORTS = {"http": 80, "https": 443}
NAT64 = ipaddress.ip_network("64:ff9b::/96")  # an IPv4 address in its last 32 bits (RFC 6052)
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # likewise (deprecated, RFC 4291)
WEBHOOK_ID = f"<int(min=1, max={BIGINT_MAX}):webhook_id>"  # anything else is 404
NOT_FOUND = "Webhook not found."


class Refused(delivery.Failed):
    """A URL that is not to be called."""


class WebhookSchema(Schema):
    id = fields.Integer(dump_only=True)
    url = Text(
        required=True,
        validate=[validate.Length(max=MAX_URL_LENGTH), lambda url: check_url(url)],
        metadata={"description": "http or https, on a public address.", "format": "uri"},
    )
    events = fields.List(
        fields.String(validate=validate.OneOf(EVENTS)),
        required=True,
        validate=validate.Length(1, len(EVENTS)),
        metadata={"description": f"Any of: {', '.join(EVENTS)}."},
    )
    secret = Text(
        load_only=True,
        validate=validate.Length(16, 256),
        metadata={"description": "The key deliveries are signed with; made up if not sent."},
    )
    created_at = fields.AwareDateTime(dump_only=True)


class WebhookCreatedSchema(WebhookSchema):
    secret = fields.String(
        metadata={"description": "The key deliveries are signed with: shown this once only."}
    )


@blp.route("")
class Webhooks(MethodView):
    @blp.response(200, WebhookSchema(many=True))
    def get(self, user_id):
        """The user's webhooks, oldest first (without their secrets)."""
        return Webhook.select().where(Webhook.user == g.user.id).order_by(Webhook.id)

    @blp.arguments(WebhookSchema())
    @blp.response(201, WebhookCreatedSchema, headers={"Location": {"schema": {"type": "string"}}})
    def post(self, fields, user_id):
        """Add a webhook; the answer holds its secret, which is never shown again."""
        fields["events"] = sorted(set(fields["events"]))
        fields.setdefault("secret", secrets.token_urlsafe(32))
        with database.atomic():
            lock_user()  # so that racing requests cannot pass the cap together
            if Webhook.select().where(Webhook.user == g.user.id).count() >= MAX_WEBHOOKS:
                abort(409, message=f"A user has at most {MAX_WEBHOOKS} webhooks.")
            hook = Webhook.create(user=g.user.id, **fields)
            count_webhooks(+1)
        return hook, {"Location": url_for(".WebhookById", user_id=user_id, webhook_id=hook.id)}


@blp.route(f"/{WEBHOOK_ID}")
class WebhookById(MethodView):
    @blp.response(200, WebhookSchema)
    @blp.alt_response(404, response="NOT_FOUND")
    def get(self, user_id, webhook_id):
        """Get one webhook (without its secret)."""
        hook = Webhook.get_or_none(Webhook.id == webhook_id, Webhook.user == g.user.id)
        if hook is None:
            abort(404, message=NOT_FOUND)
        return hook

    @blp.response(204)
    @blp.alt_response(404, response="NOT_FOUND")
    def delete(self, user_id, webhook_id):
        """Delete a webhook; its deliveries not yet made are dropped."""
        query = Webhook.delete().where(Webhook.id == webhook_id, Webhook.user == g.user.id)
        with database.atomic():
            if query.execute() == 0:
                abort(404, message=NOT_FOUND)
            count_webhooks(-1)


def count_webhooks(change):
    User.update(webhook_count=User.webhook_count + change).where(User.id == g.user.id).execute()


def emit(user_id, event, data):
    """Queue `event` for each of the user's webhooks that take it, in the caller's transaction
    (call it in the one that makes the change: the deliveries stand or fall with it). `data` is
    JSON-ready, as a schema dumps it. The body is fixed now, with a delivery id of its own."""
    for hook in Webhook.select(Webhook.id, Webhook.events).where(Webhook.user == user_id):
        if event in hook.events:
            delivery_id = str(uuid.uuid4())
            body = {"id": delivery_id, "event": event, "created_at": utcnow().isoformat()}
            delivery.queue(
                "webhook",
                webhook_id=hook.id,
                delivery_id=delivery_id,
                event=event,
                body=json.dumps({**body, "data": data}, separators=(",", ":")),
            )


@delivery.handler("webhook", attempts=ATTEMPTS)
def deliver(payload):
    """POST the body, signed; any answer but a 2xx, or none, is tried again."""
    hook = Webhook.get_or_none(Webhook.id == payload["webhook_id"])
    if hook is None:
        return  # deleted while this was claimed: its deliveries went with it
    body = payload["body"].encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "taskapi-webhooks",
        "X-Taskapi-Event": payload["event"],
        "X-Taskapi-Delivery": payload["delivery_id"],
        "X-Taskapi-Signature": f"sha256={sign(hook.secret, body)}",
    }
    close_db()  # no connection is held while the receiver takes its time
    status = post(hook.url, body, headers, current_app.config["WEBHOOK_ALLOW_PRIVATE"])
    if not 200 <= status < 300:
        raise delivery.Failed(f"the receiver answered {status}")


def sign(secret, body):
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post(url, body, headers, allow_private):
    """POST to the URL's host at an address just checked; the status of the answer, whose
    body is not read. Redirects are not followed: a 3xx is an answer like any other."""
    parts = urlsplit(url)
    port = parts.port or PORTS[parts.scheme]
    address = str(resolve(parts.hostname, port, allow_private)[0])
    if parts.scheme == "https":
        connection = HTTPSConnection(
            address,
            port,
            timeout=TIMEOUT_SECONDS,
            server_hostname=parts.hostname,  # SNI, and the name the certificate must hold
            assert_hostname=parts.hostname,
            cert_reqs="CERT_REQUIRED",
        )
    else:
        connection = HTTPConnection(address, port, timeout=TIMEOUT_SECONDS)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    cut_off = threading.Event()
    deadline = threading.Timer(DEADLINE_SECONDS, cut, [connection, cut_off])
    deadline.start()
    try:
        connection.request("POST", target, body=body, headers={**headers, "Host": parts.netloc})
        status = connection.getresponse().status
        if cut_off.is_set():  # what was read of the answer is not one
            raise delivery.Failed(f"no whole answer within {DEADLINE_SECONDS} s")
        return status
    finally:
        deadline.cancel()
        connection.close()


def cut(connection, cut_off):
    """End a call past its deadline: the read it is blocked in returns at once. It may fail, or
    end the headers early and look like a whole answer, so `cut_off` is set first: the caller,
    woken by the shutdown, must see it."""
    cut_off.set()
    try:
        connection.sock.shutdown(socket.SHUT_RDWR)
    except (AttributeError, OSError):  # not connected yet, or closed already
        pass


def check_url(url):
    """Raise ValidationError, saying why, unless the URL may be a webhook's."""
    try:
        parts = urlsplit(url)
        port = parts.port or PORTS.get(parts.scheme)
    except ValueError:
        raise ValidationError("Not a valid URL.") from None
    if not url.isascii() or any(char.isspace() or not char.isprintable() for char in url):
        raise ValidationError("Write the URL in ASCII without spaces (IDN hosts as xn--).")
    if parts.scheme not in PORTS or not parts.hostname:
        raise ValidationError("Must be an http:// or https:// URL with a host.")
    if parts.username is not None or parts.password is not None:
        raise ValidationError("Must hold no user name or password; deliveries are signed.")
    try:
        resolve(parts.hostname, port, current_app.config["WEBHOOK_ALLOW_PRIVATE"])
    except Refused as error:
        raise ValidationError(str(error)) from None


def resolve(host, port, allow_private):
    """The addresses `host` has now, or Refused if it has none, or any that is not public
    (unless allow_private): one internal address is enough to reach the inside."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):  # UnicodeError: a label too long for IDNA
        raise Refused(f"The host {host} cannot be resolved.") from None
    addresses = [ipaddress.ip_address(info[4][0]) for info in found]
    for address in addresses:
        if not allow_private and not is_public(address):
            raise Refused(
                f"The host {host} is at {address}, an internal address (loopback, private, "
                "link-local or reserved): webhooks go to public addresses only."
            )
    return addresses


def is_public(address):
    """Whether the address is one anybody on the internet could reach, judged by the IPv4
    address inside it if it holds one (IPv4-mapped, IPv4-compatible, NAT64, 6to4)."""
    if address.version == 6:
        inner = address.ipv4_mapped or address.sixtofour
        if inner is None and (address in NAT64 or address in IPV4_COMPATIBLE):
            inner = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if inner is not None:
            return is_public(inner)
    # is_global alone lets through multicast, and on Python 3.11 some reserved blocks.
    return address.is_global and not (address.is_multicast or address.is_reserved)
