"""The auth blueprint (sign up, sign in, me), bcrypt hashing, and the token check on every route."""

import functools
import logging
import uuid

import bcrypt
import jwt
from flask import current_app, g, request
from marshmallow import ValidationError
from peewee import IntegrityError, fn

from .api import Blueprint, abort
from .db import close_db, database
from .models import USER_BY_ID, DeletedUser, User
from .ratelimits import issue_device_token, limit_per_address, limit_signin, read_device_token
from .schemas import (
    AccountDeleteSchema,
    CredentialsSchema,
    PasswordChangeSchema,
    ProfileSchema,
    SignupSchema,
    TokenSchema,
    TokenUserSchema,
    UserSchema,
)
from .tokens import (
    ISSUER,
    JWKS_RETRY_SECONDS,
    JWKSClient,
    KeysUnavailable,
    LivesTooLong,
    get_user_id,
    issue_token,
    verify_token,
)

log = logging.getLogger(__name__)

blp = Blueprint(
    "auth",
    __name__,
    url_prefix="/api",
    description="Create an account or sign in to get a bearer token; manage the account.",
)

# Everything else needs a valid bearer token (see load_user).
PUBLIC = {
    "auth.signup",
    "auth.signin",
    "health.health",
    "api-docs.openapi_json",
    "api-docs.openapi_swagger_ui",
    "static",
}
BAD_CREDENTIALS = "Invalid email or password."
KEYS_UNAVAILABLE = "The sign-in provider's keys cannot be fetched; try again shortly."


def init_app(app):
    get_dummy_hash(app.config["BCRYPT_ROUNDS"])  # now, not once per thread of the first burst
    jwks_url = app.config["BETTER_AUTH_JWKS_URL"]
    app.extensions["jwks"] = JWKSClient(jwks_url) if jwks_url else None
    app.before_request(load_user)


@blp.post("/auth/signup")
@limit_per_address
@blp.arguments(SignupSchema())
@blp.response(201, TokenSchema)
@blp.alt_response(409, response="CONFLICT")
@blp.alt_response(429, response="TOO_MANY_REQUESTS")
@blp.doc(security=[])
def signup(fields):
    """Create an account and get a token."""
    password_hash = hash_password(fields.pop("password"))
    try:
        user = User.create(id=str(uuid.uuid4()), password_hash=password_hash, **fields)
    except IntegrityError:
        # The unique index on lower(email) decides, so concurrent sign-ups cannot both win.
        abort(409, message="This email is already registered.")
    return token_response(user)


@blp.post("/auth/signin")
@limit_per_address
@blp.arguments(CredentialsSchema())
@blp.response(200, TokenSchema)
@blp.alt_response(401, response="UNAUTHORIZED")
@blp.alt_response(429, response="TOO_MANY_REQUESTS")
@blp.doc(security=[])
def signin(credentials):
    """Exchange an email and password for a token; send the device_token you were given."""
    user = User.get_or_none(fn.lower(User.email) == credentials["email"])
    device = read_device_token(credentials.get("device_token"), user)
    limit_signin(credentials["email"], device)
    if not check_password(credentials["password"], user and user.password_hash):
        abort(401, message=BAD_CREDENTIALS)
    return token_response(user, device)


@blp.get("/auth/me")
@blp.response(200, UserSchema)
def me():
    """The signed-in user."""
    return g.user


@blp.patch("/auth/me")
@blp.arguments(ProfileSchema())
@blp.response(200, UserSchema)
def update_me(fields):
    """Change the signed-in user's name."""
    User.update(**fields).where(User.id == g.user.id).execute()
    g.user.name = fields["name"]
    return g.user


@blp.post("/auth/password")
@limit_per_address
@blp.arguments(PasswordChangeSchema())
@blp.response(204)
@blp.alt_response(403, response="FORBIDDEN")
@blp.alt_response(429, response="TOO_MANY_REQUESTS")
def change_password(fields):
    """Change the password: the current one is needed."""
    confirm_password(fields["current_password"])
    password_hash = hash_password(fields["new_password"])
    User.update(password_hash=password_hash).where(User.id == g.user.id).execute()


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
        User.delete().where(User.id == g.user.id).execute()  # tasks go too (ON DELETE CASCADE)
        DeletedUser.insert(id=g.user.id).on_conflict_ignore().execute()


def confirm_password(password):
    if g.user.password_hash is None:
        abort(403, message="This account has no password here: it signs in through the frontend.")
    if not check_password(password, g.user.password_hash):
        abort(403, message="The password is wrong.")


def token_response(user, device=None):
    config = current_app.config
    token = issue_token(user.id, user.email, config["BETTER_AUTH_SECRET"], config["JWT_EXPIRES_IN"])
    return {
        "user": user,
        "access_token": token,
        "token_type": "bearer",
        "expires_in": config["JWT_EXPIRES_IN"],
        "device_token": issue_device_token(user, device),
    }


def hash_password(password):
    salt = bcrypt.gensalt(current_app.config["BCRYPT_ROUNDS"])
    with current_app.extensions["password_gate"].turn():
        return bcrypt.hashpw(password.encode(), salt).decode()


def check_password(password, password_hash):
    """Runs bcrypt even without a hash (unknown email, or a user provisioned without a
    password), so the answer's timing does not tell whether the email exists."""
    dummy = get_dummy_hash(current_app.config["BCRYPT_ROUNDS"])
    close_db()  # the database is done with: hand the connection back while bcrypt runs
    with current_app.extensions["password_gate"].turn():
        matches = bcrypt.checkpw(password.encode(), (password_hash or dummy).encode())
    return matches and password_hash is not None


@functools.cache
def get_dummy_hash(rounds):
    return bcrypt.hashpw(b"no account has this password", bcrypt.gensalt(rounds)).decode()


def load_user():
    """Deny by default: every endpoint outside PUBLIC needs a valid bearer token."""
    if request.method == "OPTIONS" or request.endpoint is None or request.endpoint in PUBLIC:
        return  # preflights carry no token; unknown URLs stay 404
    g.user = get_or_provision_user(get_token_claims())
    if request.view_args.get("user_id", g.user.id) != g.user.id:
        abort(403, message="This token's user may not access another user's data.")


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
    """The token's user; a frontend-signed token for an unknown id provisions that user."""
    user_id = get_user_id(claims)
    user = USER_BY_ID.first(id=user_id)
    if user is not None:
        return user
    if claims.get("iss") == ISSUER or DeletedUser.get_or_none(DeletedUser.id == user_id):
        reject_token("The token's account no longer exists.")
    try:
        fields = TokenUserSchema().load(claims)
    except ValidationError:
        reject_token("The token's user is unknown here and carries no valid email.")
    # Ignoring conflicts settles a race of two first requests; a taken email leaves no row.
    User.insert(id=user_id, **fields).on_conflict_ignore().execute()
    user = User.get_or_none(User.id == user_id)
    if user is None:
        abort(409, message="The token's email is already registered to another account.")
    return user


def reject_token(message, description=None):
    challenge = 'Bearer error="invalid_token"'
    if description:
        challenge += f', error_description="{description}"'
    abort(401, message=message, headers={"WWW-Authenticate": challenge})
