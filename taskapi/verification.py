"""Proof of an email address: verification links, password-reset links, and what proof settles.

The rule: an account whose email nobody has proven does not hold that email against the person
who proves it. Whoever proves control of it (a reset link mailed here, or a frontend token
saying `emailVerified: true` for that address) gets the account that holds it unproven, with
its tasks, under their own identity; the old identity is ended for good (its sessions, its
password, its frontend tokens). Nobody gets an account through an email they have not proven:
a frontend token whose email is unproven, or an account already proven by someone, is a 409 as
before. A verification link only verifies the signed-in account it was sent for, so a stranger
who signed up with your address cannot have you verify it for them by clicking."""

import logging
import secrets
import uuid
from datetime import timedelta

from flask import current_app, g
from peewee import fn

from . import delivery, mail
from .api import Blueprint, abort
from .db import database
from .models import EmailToken, IdempotencyKey, Task, TaskList, TaskTag, User, utcnow
from .passwords import hash_password, require_strong, set_password_hash
from .ratelimits import get_digest, hit, limit_per_address
from .schemas import AcceptedSchema, EmailSchema, EmailTokenSchema, PasswordResetSchema
from .tokens import hash_token

log = logging.getLogger(__name__)

blp = Blueprint(
    "verification",
    __name__,
    url_prefix="/api/auth",
    description="Links mailed to an account's address: reset a forgotten password, verify it.",
)

RESET = "password_reset"
VERIFY = "verify_email"
LIFETIMES = {RESET: timedelta(hours=1), VERIFY: timedelta(days=3)}
RESET_SENT = "If an account has this email, a link to reset its password is on its way."
VERIFY_SENT = "If the email is not verified yet, a link to verify it is on its way."
BAD_LINK = "This link is invalid, used or expired; ask for a new one."


@blp.post("/password-reset")
@limit_per_address
@blp.arguments(EmailSchema())
@blp.response(202, AcceptedSchema)
@blp.alt_response(429, response="TOO_MANY_REQUESTS")
@blp.doc(security=[])
def request_password_reset(fields):
    """Mail a link to reset the password: the answer is the same whether the account exists."""
    hit(f"reset:{get_digest(fields['email'])}", current_app.config["SIGNIN_EMAIL_RATE_LIMIT"])
    delivery.queue(RESET, email=fields["email"])  # the same work either way: the sender looks it up
    return {"message": RESET_SENT}


@blp.post("/password-reset/confirm")
@limit_per_address
@blp.arguments(PasswordResetSchema())
@blp.response(204)
@blp.alt_response(429, response="TOO_MANY_REQUESTS")
@blp.doc(security=[])
def reset_password(fields):
    """Set a new password with the token from the link; every session of the account ends."""
    user = get_token_user(fields["token"], RESET)
    if user.password_hash is None and user.email_verified:  # linked before the frontend proved it
        abort(422, errors={"json": {"token": [BAD_LINK]}})
    require_strong(fields["new_password"], user.email, user.name, field="new_password")
    password_hash = hash_password(fields["new_password"])
    with database.atomic():
        # The account's row first: two links of one account used at once wait, not deadlock.
        User.update(email_verified=True).where(User.id == user.id).execute()
        use_token(fields["token"], RESET)
        EmailToken.delete().where(EmailToken.user == user.id, EmailToken.purpose == RESET).execute()
        if user.password_hash is None:  # a frontend account nobody proved (see compose_reset)
            user = take_over(user, str(uuid.uuid4()))
        set_password_hash(user.id, password_hash)


@blp.post("/verify-email")
@limit_per_address
@blp.arguments(EmailTokenSchema())
@blp.response(204)
@blp.alt_response(429, response="TOO_MANY_REQUESTS")
def verify_email(fields):
    """Verify the signed-in account's email with the token from the link it was sent."""
    use_token(fields["token"], VERIFY, g.user.id)
    User.update(email_verified=True).where(User.id == g.user.id).execute()


@blp.post("/verify-email/resend")
@limit_per_address
@blp.response(202, AcceptedSchema)
@blp.alt_response(429, response="TOO_MANY_REQUESTS")
def resend_verification():
    """Mail the signed-in user a new link to verify the email (nothing if it is verified)."""
    hit(f"verify:{get_digest(g.user.id)}", current_app.config["SIGNIN_EMAIL_RATE_LIMIT"])
    if not g.user.email_verified:
        delivery.queue(VERIFY, user_id=g.user.id)
    return {"message": VERIFY_SENT}


@mail.composer(RESET)
def compose_reset(payload):
    user = User.get_or_none(fn.lower(User.email) == payload["email"])
    if user is None or (user.password_hash is None and user.email_verified):
        return None  # nobody, or someone the frontend signs in: it resets their password
    link = get_link("PASSWORD_RESET_URL", create_token(user.id, RESET))
    text = (
        "Someone asked to reset the password of your taskapi account.\n"
        f"To choose a new one, open this link within the hour:\n\n{link}\n\n"
        "If it was not you, ignore this email: your password stays as it is.\n"
    )
    return user.email, "Reset your taskapi password", text


@mail.composer(VERIFY)
def compose_verification(payload):
    user = User.get_or_none(User.id == payload["user_id"])
    if user is None or user.email_verified:
        return None
    link = get_link("EMAIL_VERIFY_URL", create_token(user.id, VERIFY))
    text = (
        "To confirm that this is your email address for taskapi, open this link\n"
        f"where you are signed in:\n\n{link}\n\n"
        "If you did not sign up, ignore this email: nothing is verified without you.\n"
    )
    return user.email, "Verify your email for taskapi", text


def get_link(setting, token):
    return f"{current_app.config[setting]}?token={token}"


def create_token(user_id, purpose):
    """A link's token: only its digest is stored, so the database alone opens no account."""
    token = secrets.token_urlsafe(32)
    expires_at = utcnow() + LIFETIMES[purpose]
    EmailToken.create(
        token_hash=hash_token(token), user=user_id, purpose=purpose, expires_at=expires_at
    )
    return token


def get_token_user(token, purpose):
    """The account an unused, unexpired token of this purpose was sent for, or 422."""
    user = User.select(User).join(EmailToken).where(is_usable(token, purpose)).first()
    if user is None:
        abort(422, errors={"json": {"token": [BAD_LINK]}})
    return user


def use_token(token, purpose, user_id=None):
    """Use the token up (only if it was sent for `user_id`, when given), or 422: of two requests
    racing with it, one wins. A write, so SQLite never upgrades a reading transaction."""
    usable = is_usable(token, purpose)
    if user_id is not None:
        usable &= EmailToken.user == user_id
    if not EmailToken.update(used_at=utcnow()).where(usable).execute():
        abort(422, errors={"json": {"token": [BAD_LINK]}})


def is_usable(token, purpose):
    return (
        (EmailToken.token_hash == hash_token(token))
        & (EmailToken.purpose == purpose)
        & EmailToken.used_at.is_null()
        & (EmailToken.expires_at > utcnow())
    )


def is_proven(claims, email):
    """Whether a frontend token says that `email` (its own, as stored here) is verified."""
    verified = claims.get("emailVerified") is True or claims.get("email_verified") is True
    token_email = claims.get("email")
    return verified and isinstance(token_email, str) and token_email.lower() == email.lower()


def settle_email(user_id, fields, email_verified):
    """The account for a frontend token whose email another account holds: that account, taken
    over, if this token proves the email and nobody proved it before; otherwise None (409)."""
    holder = User.get_or_none(fn.lower(User.email) == fields["email"])
    if holder is not None and holder.id == user_id:
        return holder  # a request racing with this one took the email over for this user
    if holder is None or not email_verified or holder.email_verified:
        return None
    log.warning("an unverified account's email was proven by a frontend user: taken over")
    return take_over(holder, user_id, name=fields.get("name") or holder.name)


def take_over(holder, user_id, **fields):
    """A new, verified account `user_id` with everything `holder` had; `holder` ends, and its id
    is refused from then on (deleted_users), so no token or password of it reaches the tasks.
    Of two requests racing to take one account, the second finds it gone and reads the first's."""
    with database.atomic():
        released = User.update(email=f"taken-over:{holder.id}").where(
            User.id == holder.id, User.email == holder.email
        )
        if not released.execute():
            return User.get_or_none(User.id == user_id)
        taken = {"email": holder.email, "email_verified": True, "time_zone": holder.time_zone}
        User.insert(id=user_id, **taken, **fields).execute()  # due_keys stay right: same zone
        TaskList.delete().where(TaskList.user == user_id).execute()  # holder's inbox comes instead
        for model in (TaskList, Task, TaskTag, IdempotencyKey):
            model.update(user=user_id).where(model.user == holder.id).execute()
        live = Task.select(fn.COUNT(Task.id)).where(Task.user == user_id, Task.deleted_at.is_null())
        User.update(task_count=live).where(User.id == user_id).execute()  # triggers count no moves
        User.delete_for_good(holder.id)
    return User.get_by_id(user_id)
