"""The token check on every route, and the signed-in account: read it, rename it, delete it."""

import logging

import jwt
from flask import current_app, g, request
from marshmallow import ValidationError

from . import bounds, reminders
from .api import Blueprint, abort
from .dates import move_all_day_tasks
from .db import database
from .models import USER_BY_ID, USER_BY_SESSION, DeletedUser, User
from .passwords import confirm_password, get_dummy_hash
from .ratelimits import limit_per_address
from .schemas import AccountDeleteSchema, ProfileSchema, TokenUserSchema, UserSchema
from .sessions import ENDED, check_session
from .tokens import (
    ISSUER,
    JWKS_RETRY_SECONDS,
    JWKSClient,
    KeysUnavailable,
    LivesTooLong,
    get_user_id,
    verify_token,
)
from .verification import is_proven, settle_email

log = logging.getLogger(__name__)

blp = Blueprint(
    "auth",
    __name__,
    url_prefix="/api",
    description="The signed-in account, whether it signs in here or through the frontend.",
)

# Everything else needs a valid bearer token (see load_user).
PUBLIC = {
    "accounts.signup",
    "accounts.signin",
    "verification.request_password_reset",
    "verification.reset_password",
    "sessions.refresh",
    "health.health",
    "calendars.Feed",  # its URL is its secret
    "api-docs.openapi_json",
    "api-docs.openapi_swagger_ui",
    "static",
}
KEYS_UNAVAILABLE = "The sign-in provider's keys cannot be fetched; try again shortly."


def init_app(app):
    get_dummy_hash(app.config["BCRYPT_ROUNDS"])  # now, not once per thread of the first burst
    jwks_url = app.config["BETTER_AUTH_JWKS_URL"]
    app.extensions["jwks"] = JWKSClient(jwks_url) if jwks_url else None
    app.before_request(load_user)
    app.teardown_request(bounds.end_search)


@blp.get("/auth/me")
@blp.response(200, UserSchema)
def me():
    """The signed-in user."""
    return g.user


@blp.patch("/auth/me")
@blp.arguments(ProfileSchema())
@blp.response(200, UserSchema)
def update_me(fields):
    """Change the signed-in user's name or time zone."""
    with database.atomic():
        if fields:
            User.update(**fields).where(User.id == g.user.id).execute()
        if "time_zone" in fields:
            move_all_day_tasks(g.user.id, fields["time_zone"])
            reminders.follow_time_zone(g.user.id, fields["time_zone"])
    for name, value in fields.items():
        setattr(g.user, name, value)
    return g.user


@blp.delete("/users/<user_id>")
@limit_per_address
@blp.arguments(AccountDeleteSchema())
@blp.response(204)
@blp.alt_response(429, response="TOO_MANY_REQUESTS")
def delete_account(fields, user_id):
    """Delete the account and all its tasks; accounts with a password must send it."""
    if g.user.password_hash is not None:
        if "password" not in fields:
            abort(422, errors={"json": {"password": ["Missing data for required field."]}})
        confirm_password(fields["password"])
    with database.atomic():
        User.delete_for_good(g.user.id)


def load_user():
    """Deny by default: every endpoint outside PUBLIC needs a valid bearer token."""
    if request.method == "OPTIONS" or request.endpoint is None or request.endpoint in PUBLIC:
        return  # preflights carry no token; unknown URLs stay 404
    claims = get_token_claims()
    # A write to a user's data, or a search of it: limited per user (bounds.py).
    limited = "user_id" in request.view_args and (request.method != "GET" or "q" in request.args)
    if limited:
        bounds.refuse_early(get_user_id(claims))
    g.user = get_or_provision_user(claims)
    if "user_id" not in request.view_args:
        return
    if request.view_args["user_id"] != g.user.id:
        abort(403, message="This token's user may not access another user's data.")
    if limited:
        bounds.limit_user(g.user)


def get_token_claims():
    auth = request.authorization
    if auth is None or auth.type != "bearer" or not auth.token:
        abort(401, message="Send the header Authorization: Bearer <token>.")
    config = current_app.config
    try:
        return verify_token(
            auth.token,
            config["BETTER_AUTH_SECRET"],
            config["JWT_ISSUER"],
            config["JWT_AUDIENCE"],
            current_app.extensions["jwks"],
            config["JWT_EXPIRES_IN"],
        )
    except KeysUnavailable as error:
        # The frontend is down or slow: the token may well be good, so this is not a 401.
        log.warning("JWKS unavailable: %s", error)
        abort(503, message=KEYS_UNAVAILABLE, headers={"Retry-After": str(JWKS_RETRY_SECONDS)})
    except jwt.ExpiredSignatureError:
        reject_token("The token has expired; sign in again.", "token expired")
    except LivesTooLong:
        reject_token(f"The token may live {config['JWT_EXPIRES_IN']} s at most.", "token too long")
    except jwt.InvalidTokenError:
        reject_token("The token is invalid.")


def get_or_provision_user(claims):
    """The token's user: of a live session, for a token issued here; for a frontend-signed
    token, the user it names, provisioned on first sight."""
    user_id = get_user_id(claims)
    if claims.get("iss") == ISSUER:
        if not current_app.config["LOCAL_ACCOUNTS"]:
            reject_token("Sign in through the frontend: this service no longer signs people in.")
        return get_session_user(user_id, claims.get("sid"))
    user = USER_BY_ID.first(id=user_id)
    if user is None:
        return provision_user(user_id, claims)
    if not user.email_verified and is_proven(claims, user.email):  # proven since: written once
        User.update(email_verified=True).where(User.id == user_id).execute()
        user.email_verified = True
    return user


def get_session_user(user_id, session_id):
    """One query for the user and the session together: a read stays at two round trips."""
    if not isinstance(session_id, str) or not session_id.isprintable():
        reject_token(ENDED)  # issued before sessions existed: sign in once more
    g.session_id = session_id
    user = USER_BY_SESSION.first(id=user_id, session_id=session_id)
    if user is None or not check_session(user, session_id):
        reject_token(ENDED)
    return user


def provision_user(user_id, claims):
    if DeletedUser.get_or_none(DeletedUser.id == user_id):
        reject_token("The token's account no longer exists.")
    try:
        fields = TokenUserSchema().load(claims)
    except ValidationError:
        reject_token("The token's user is unknown here and carries no valid email.")
    verified = is_proven(claims, fields["email"])
    # Ignoring conflicts settles a race of two first requests; a taken email leaves no row.
    User.insert(id=user_id, email_verified=verified, **fields).on_conflict_ignore().execute()
    user = User.get_or_none(User.id == user_id) or settle_email(user_id, fields, verified)
    if user is None:
        abort(409, message="The token's email is already registered to another account.")
    return user


def reject_token(message, description=None):
    challenge = 'Bearer error="invalid_token"'
    if description:
        challenge += f', error_description="{description}"'
    abort(401, message=message, headers={"WWW-Authenticate": challenge})
