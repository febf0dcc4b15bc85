"""Accounts that sign in here rather than through the frontend: sign up, sign in, change the
password (links to reset it or verify the email: verification.py). With LOCAL_ACCOUNTS=false
the blueprint is not registered (see create_app)."""

import uuid

from flask import g
from peewee import IntegrityError, fn

from . import delivery
from .api import Blueprint, abort
from .db import database
from .models import User
from .passwords import (
    check_password,
    confirm_password,
    hash_password,
    require_strong,
    set_password_hash,
)
from .ratelimits import issue_device_token, limit_per_address, limit_signin, read_device_token
from .schemas import CredentialsSchema, PasswordChangeSchema, SignupSchema, TokenSchema
from .sessions import begin_session
from .verification import VERIFY

blp = Blueprint(
    "accounts",
    __name__,
    url_prefix="/api/auth",
    description="Accounts with a password here: sign up or sign in to get tokens.",
)

BAD_CREDENTIALS = "Invalid email or password."


@blp.post("/signup")
@limit_per_address
@blp.arguments(SignupSchema())
@blp.response(201, TokenSchema)
@blp.alt_response(409, response="CONFLICT")
@blp.alt_response(429, response="TOO_MANY_REQUESTS")
@blp.doc(security=[])
def signup(fields):
    """Create an account and get tokens; a link to verify the email is mailed to it."""
    password, device_name = fields.pop("password"), fields.pop("device_name", None)
    require_strong(password, fields["email"], fields.get("name"))
    password_hash = hash_password(password)
    try:
        with database.atomic():
            user = User.create(id=str(uuid.uuid4()), password_hash=password_hash, **fields)
            delivery.queue(VERIFY, user_id=user.id)
    except IntegrityError:
        # The unique index on lower(email) decides, so concurrent sign-ups cannot both win.
        abort(409, message="This email is already registered.")
    return {**begin_session(user, device_name), "device_token": issue_device_token(user)}


@blp.post("/signin")
@limit_per_address
@blp.arguments(CredentialsSchema())
@blp.response(200, TokenSchema)
@blp.alt_response(401, response="UNAUTHORIZED")
@blp.alt_response(429, response="TOO_MANY_REQUESTS")
@blp.doc(security=[])
def signin(credentials):
    """Exchange an email and password for tokens; send the device_token you were given."""
    user = User.get_or_none(fn.lower(User.email) == credentials["email"])
    device = read_device_token(credentials.get("device_token"), user)
    limit_signin(credentials["email"], device)
    if not check_password(credentials["password"], user and user.password_hash):
        abort(401, message=BAD_CREDENTIALS)
    tokens = begin_session(user, credentials.get("device_name"))
    return {**tokens, "device_token": issue_device_token(user, device)}


@blp.post("/password")
@limit_per_address
@blp.arguments(PasswordChangeSchema())
@blp.response(204)
@blp.alt_response(403, response="FORBIDDEN")
@blp.alt_response(429, response="TOO_MANY_REQUESTS")
def change_password(fields):
    """Change the password (the current one is needed); every other session ends."""
    confirm_password(fields["current_password"])
    require_strong(fields["new_password"], g.user.email, g.user.name, field="new_password")
    password_hash = hash_password(fields["new_password"])
    set_password_hash(g.user.id, password_hash, keep_session=g.get("session_id"))
