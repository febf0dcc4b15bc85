"""Sessions of the accounts that sign in here: begun by sign-up and sign-in, listed and ended by
their user, and renewed with refresh tokens that work once (RFC 9700, section 4.14).

An access token issued here names its session, and every request checks the session in the same
query that loads the user (models.USER_BY_SESSION): once a session's row is deleted, its tokens
are refused by every process at once."""

import logging
import secrets
from datetime import timedelta

from flask import current_app, g, request

from .api import Blueprint, abort
from .db import database
from .models import RefreshToken, Session, User, utcnow
from .schemas import RefreshSchema, SessionSchema, TokenSchema
from .tokens import hash_token, issue_token

log = logging.getLogger(__name__)

blp = Blueprint(
    "sessions",
    __name__,
    url_prefix="/api/auth",
    description="The devices an account is signed in on: list them, end them, stay signed in.",
)

LAST_USED_STEP = timedelta(minutes=1)  # last_used_at is kept to the minute, not per request
MAX_LABEL_LENGTH = 100
ENDED = "This session has ended; sign in again."
REFRESH_REFUSED = "This refresh token is unknown, used or expired; sign in again."


@blp.get("/sessions")
@blp.response(200, SessionSchema(many=True))
def list_sessions():
    """The signed-in user's live sessions, newest first; the current one is marked."""
    sessions = Session.select().where(Session.user == g.user.id, Session.expires_at > utcnow())
    return [mark_current(session) for session in sessions.order_by(Session.created_at.desc())]


@blp.delete("/sessions/<session_id>")
@blp.response(204)
@blp.alt_response(404, response="NOT_FOUND")
def end_session(session_id):
    """End one of the user's sessions: its tokens are refused from now on."""
    mine = (Session.id == session_id) & (Session.user == g.user.id)
    if not session_id.isprintable() or not Session.delete().where(mine).execute():
        abort(404, message="Session not found.")


@blp.post("/signout")
@blp.response(204)
def signout():
    """End the current session (a token from the frontend has none here: nothing to end)."""
    Session.delete().where(Session.id == g.get("session_id"), Session.user == g.user.id).execute()


@blp.post("/refresh")
@blp.arguments(RefreshSchema())
@blp.response(200, TokenSchema)
@blp.alt_response(401, response="UNAUTHORIZED")
@blp.doc(security=[])
def refresh(fields):
    """A new access token and a new refresh token for a refresh token, which then is used up."""
    tokens = renew(fields["refresh_token"])
    if tokens is None:
        abort(401, message=REFRESH_REFUSED)
    return tokens


def begin_session(user, device_name=None):
    """A new session for `user` (named after `device_name`, else the User-Agent), and its tokens."""
    now = utcnow()
    lifetime = timedelta(seconds=current_app.config["REFRESH_EXPIRES_IN"])
    Session.delete().where(Session.user == user.id, Session.expires_at <= now).execute()
    session = Session.create(
        id=secrets.token_urlsafe(16),
        user=user.id,
        label=get_label(device_name),
        created_at=now,
        last_used_at=now,
        expires_at=now + lifetime,
    )
    return issue_tokens(user, session.id)


def issue_tokens(user, session_id):
    """The token response: an access token naming the session, and a new refresh token."""
    config = current_app.config
    refresh_token = secrets.token_urlsafe(32)
    RefreshToken.create(token_hash=hash_token(refresh_token), session=session_id)
    access_token = issue_token(
        user.id, user.email, session_id, config["BETTER_AUTH_SECRET"], config["JWT_EXPIRES_IN"]
    )
    return {
        "user": user,
        "access_token": access_token,
        "token_type": "bearer",
        "expires_in": config["JWT_EXPIRES_IN"],
        "refresh_token": refresh_token,
        "refresh_expires_in": config["REFRESH_EXPIRES_IN"],
    }


def renew(refresh_token):
    """New tokens for a refresh token, using it up; None if it cannot be. A token presented a
    second time ends its session: one of the two presenting it stole it. The session's row is
    locked first, as sign-out and a new password lock it, so racing requests wait in turn
    rather than deadlock; and the transaction starts with a write, as SQLite needs."""
    token_hash, now = hash_token(refresh_token), utcnow()
    token = RefreshToken.get_or_none(RefreshToken.token_hash == token_hash)
    if token is None:
        return None
    lifetime = timedelta(seconds=current_app.config["REFRESH_EXPIRES_IN"])
    live = (Session.id == token.session_id) & (Session.expires_at > now)
    unused = (RefreshToken.token_hash == token_hash) & RefreshToken.used_at.is_null()
    with database.atomic():
        if not Session.update(last_used_at=now, expires_at=now + lifetime).where(live).execute():
            return None
        if not RefreshToken.update(used_at=now).where(unused).execute():
            Session.delete().where(Session.id == token.session_id).execute()
            log.warning("a used refresh token came back: its session is ended")
            return None
        forget_used_tokens(token.session_id, before=now - lifetime)
        user = User.select().join(Session).where(Session.id == token.session_id).get()
        return issue_tokens(user, token.session_id)


def forget_used_tokens(session_id, before):
    """Used refresh tokens are kept for a session's lifetime, to recognise a replay; then go."""
    old = (RefreshToken.session == session_id) & (RefreshToken.used_at < before)
    RefreshToken.delete().where(old).execute()


def check_session(user, session_id):
    """Whether the session USER_BY_SESSION read with the user is still on; if it is, its
    last_used_at is brought up to the minute (a write at most once a minute)."""
    now = utcnow()
    if user.expires_at <= now:
        return False
    if now - user.last_used_at >= LAST_USED_STEP:
        # Threads that saw the same old time all come here; the first one writes.
        stale = Session.last_used_at <= now - LAST_USED_STEP
        Session.update(last_used_at=now).where(Session.id == session_id, stale).execute()
    return True


def end_other_sessions(user_id, keep=None):
    """Every session of the user but `keep` (after a new password, all of them)."""
    Session.delete().where(Session.user == user_id, Session.id != (keep or "")).execute()


def mark_current(session):
    session.current = session.id == g.get("session_id")
    return session


def get_label(device_name):
    label = device_name or request.user_agent.string
    printable = "".join(char for char in label[: MAX_LABEL_LENGTH * 2] if char.isprintable())
    return printable.strip()[:MAX_LABEL_LENGTH] or "unknown device"
