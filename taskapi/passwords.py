"""Passwords: what makes one acceptable (NIST SP 800-63B), and hashing and checking it with
bcrypt, at most BCRYPT_CONCURRENCY at a time (the password gate, see ratelimits.py)."""

import functools
import os
import re
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import bcrypt
from flask import current_app, g
from zxcvbn import zxcvbn

from .api import abort
from .db import close_db, database
from .models import User
from .sessions import end_other_sessions

# bcrypt threads' nice value, against the request threads' 0: under load, reads come first.
BCRYPT_NICENESS = 10
# zxcvbn's score: 0 and 1 fall within a million guesses, which an offline attacker tries at once.
MIN_SCORE = 2
WHY = {
    "passwords": "it is one of the most commonly used passwords",
    "user_inputs": "it is made from your email address or name",
    "english_wikipedia": "it is a common word",
    "us_tv_and_film": "it is a common word",
    "surnames": "it is a common name",
    "female_names": "it is a common name",
    "male_names": "it is a common name",
    "repeat": "it repeats characters or words",
    "sequence": "it is a sequence such as 12345678 or abcdefgh",
    "spatial": "it is a keyboard pattern such as qwertyuiop",
    "date": "it is a date",
}


def require_strong(password, email, name=None, field="password"):
    """422 naming `field` unless the password is long enough and not easy to guess: not
    common, not a pattern, not made from the account's own email or name."""
    problem = get_weakness(password, email, name)
    if problem:
        abort(422, errors={"json": {field: [problem]}})


def get_weakness(password, email, name=None):
    """Why the password is refused, in words; None if it is acceptable."""
    minimum = current_app.config["PASSWORD_MIN_LENGTH"]
    if len(password) < minimum:
        return f"Must be at least {minimum} characters."
    verdict = zxcvbn(password, user_inputs=get_own_words(email, name))
    if verdict["score"] >= MIN_SCORE:
        return None
    return f"Too easy to guess: {get_reason(verdict['sequence'])}. Try a few unrelated words."


def get_own_words(email, name):
    """The words a password must not be made of: the email, its parts, and the name's, whole
    and joined ("ada.lovelace@example.com" gives ada, lovelace and adalovelace too)."""
    local, _, domain = email.partition("@")
    words = [email, local, domain, *domain.split(".")]
    for text in (local, name or ""):
        parts = re.findall(r"[^\W_]+", text)
        words += [*parts, "".join(parts)]
    return [word for word in words if word]


def get_reason(matches):
    """The reason of the longest part zxcvbn recognised."""
    for match in sorted(matches, key=lambda match: -len(match["token"])):
        reason = WHY.get(match.get("dictionary_name")) or WHY.get(match["pattern"])
        if reason:
            return reason
    return "it is short and simple"


def hash_password(password):
    salt = bcrypt.gensalt(current_app.config["BCRYPT_ROUNDS"])
    with current_app.extensions["password_gate"].turn():
        return run_bcrypt(bcrypt.hashpw, password.encode(), salt).decode()


def check_password(password, password_hash):
    """Runs bcrypt even without a hash (unknown email, or a user provisioned without a
    password), so the answer's timing does not tell whether the email exists."""
    dummy = get_dummy_hash(current_app.config["BCRYPT_ROUNDS"])
    close_db()  # the database is done with: hand the connection back while bcrypt runs
    with current_app.extensions["password_gate"].turn():
        matches = run_bcrypt(bcrypt.checkpw, password.encode(), (password_hash or dummy).encode())
    return matches and password_hash is not None


def run_bcrypt(function, *args):
    """function(*args) on one of this process's bcrypt threads, which run at a lower priority
    than the threads that answer requests: while reads wait for a core, the scheduler gives it
    to them first; when nothing else runs, the hashes have every core (BCRYPT_CONCURRENCY)."""
    threads = get_bcrypt_threads(os.getpid(), current_app.config["BCRYPT_CONCURRENCY"])
    return threads.submit(function, *args).result()


@functools.cache
def get_bcrypt_threads(pid, count):
    """One pool a process: threads do not survive fork(), so a worker never uses its parent's."""
    return ThreadPoolExecutor(count, thread_name_prefix="bcrypt", initializer=lower_priority)


def lower_priority():
    """Linux gives each thread a nice value of its own: this sets the calling thread's only.
    (Elsewhere it would set the whole process's, so there the hashes keep the priority.)"""
    if sys.platform == "linux":
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BCRYPT_NICENESS)


@functools.cache
def get_dummy_hash(rounds):
    return bcrypt.hashpw(b"no account has this password", bcrypt.gensalt(rounds)).decode()


def confirm_password(password):
    """403 unless `password` is the signed-in user's."""
    if g.user.password_hash is None:
        abort(403, message="This account has no password here: it signs in through the frontend.")
    if not check_password(password, g.user.password_hash):
        abort(403, message="The password is wrong.")


def set_password_hash(user_id, password_hash, keep_session=None):
    """A new password for the account; its sessions end, but `keep_session`. Hashed
    beforehand: bcrypt's quarter second must not hold a transaction open."""
    with database.atomic():
        User.update(password_hash=password_hash).where(User.id == user_id).execute()
        end_other_sessions(user_id, keep=keep_session)
