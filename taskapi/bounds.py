"""What one user may take of the service: how many tasks and lists they keep (quotas), and how
fast they write and search (per-user rate limits), so that one heavy or hostile account cannot
slow everyone else down (OWASP API4, unrestricted resource consumption)."""

import threading
from contextlib import ExitStack

from flask import current_app, g, request
from peewee import PeeweeException

from .api import abort
from .db import database, is_postgres
from .models import TaskList
from .ratelimits import PASSWORD_ROUTES, hit, refuse_if_remembered

WRITES = {"POST", "PUT", "PATCH", "DELETE"}
TOO_MANY_WRITES = "Too many changes at once; wait for the time in Retry-After, then go on."
TOO_MANY_SEARCHES = "Too many searches at once; wait for the time in Retry-After, then go on."
searching = set()  # the users with a search running in this process
searching_lock = threading.Lock()
# PostgreSQL's advisory lock of a user's search: (SEARCH_LOCKS, a hash of the user's id). Two
# users whose ids hash alike (one pair in four billion) would search one at a time together.
SEARCH_LOCKS = 1_936_024_419
LOCK_SEARCH = "SELECT pg_try_advisory_xact_lock(%s, hashtext(%s))"


def limit_user(user):
    """Count a write to the user's data, or a search of it, against the user's limit; or
    answer 429. Called by auth.load_user for the routes under /api/users/{user_id}; deleting
    the account has limits of its own (ratelimits.py)."""
    limit = get_limit(user.id)
    if limit and limit[2] == TOO_MANY_SEARCHES and current_app.config["RATELIMIT_ENABLED"]:
        begin_search(user.id)
        hit(*limit)
        lock_search(user.id)
    elif limit:
        hit(*limit)


def begin_search(user_id):
    """One search at a time for each user: a search holds a core for tens of milliseconds, and
    one user's searches side by side would take cores from everyone else. In each process, a
    second one while the first runs is a 429 at once, without a query and without counting
    against the limit; lock_search says so for the whole service."""
    with searching_lock:
        if user_id in searching:
            refuse_second_search()
        searching.add(user_id)
    g.searching = user_id


def lock_search(user_id):
    """On PostgreSQL, one search at a time for each user in every process and machine: an
    advisory lock, in a transaction that lasts the request (so it holds behind PgBouncer's
    transaction pooling too) and ends in end_search, the lock with it."""
    if not is_postgres():
        return
    g.search_transaction = ExitStack()
    g.search_transaction.enter_context(database.atomic())
    if not database.execute_sql(LOCK_SEARCH, (SEARCH_LOCKS, user_id)).fetchone()[0]:
        refuse_second_search()


def refuse_second_search():
    abort(429, message=TOO_MANY_SEARCHES, headers={"Retry-After": "1"})


def end_search(exception=None):
    """After the request (teardown): the user may search again."""
    try:
        if transaction := g.pop("search_transaction", None):
            transaction.close()  # the search only read: commit, and the lock goes
    except PeeweeException:  # the connection failed: never hand it back in a transaction
        database.manual_close()
    finally:
        if user_id := g.pop("searching", None):
            with searching_lock:
                searching.discard(user_id)


def refuse_early(user_id):
    """429 at once if this process refused the user's last write (or search) and the window
    has not ended: called before the token's user is read, so a flood past its limit costs no
    query at all."""
    if user_id and (limit := get_limit(user_id)):
        refuse_if_remembered(limit[0], limit[2])


def get_limit(user_id):
    """(key, limits, message) of this request's limit, or None."""
    config = current_app.config
    if request.method in WRITES and request.endpoint not in PASSWORD_ROUTES:
        return f"writes:{user_id}", config["WRITE_RATE_LIMIT"], TOO_MANY_WRITES
    if request.method in ("GET", "HEAD") and request.args.get("q"):  # HEAD runs the search too
        return f"searches:{user_id}", config["SEARCH_RATE_LIMIT"], TOO_MANY_SEARCHES
    return None


def check_task_quota(task_count):
    """409 unless the user, holding task_count live tasks (read under lock_user), may add one."""
    quota = current_app.config["TASK_QUOTA"]
    if task_count >= quota:
        abort(409, message=f"An account holds at most {quota} tasks; delete some to add more.")


def check_list_quota():
    """409 unless the user may add a list. After lock_user()."""
    quota = current_app.config["LIST_QUOTA"]
    if TaskList.of(g.user.id).count() >= quota:
        abort(409, message=f"An account holds at most {quota} lists; delete some to add more.")
