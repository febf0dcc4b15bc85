"""What one user may take of the service: how many tasks and lists they keep (quotas), and how
fast they write and search (per-user rate limits), so that one heavy or hostile account cannot
slow everyone else down (OWASP API4, unrestricted resource consumption)."""

from flask import current_app, g, request

from .api import abort
from .models import TaskList
from .ratelimits import PASSWORD_ROUTES, hit, refuse_if_remembered

WRITES = {"POST", "PUT", "PATCH", "DELETE"}
TOO_MANY_WRITES = "Too many changes at once; wait for the time in Retry-After, then go on."
TOO_MANY_SEARCHES = "Too many searches at once; wait for the time in Retry-After, then go on."


def limit_user(user):
    """Count a write to the user's data, or a search of it, against the user's limit; or
    answer 429. Called by auth.load_user for the routes under /api/users/{user_id}; deleting
    the account has limits of its own (ratelimits.py)."""
    if limit := get_limit(user.id):
        hit(*limit)


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
    if request.method == "GET" and request.args.get("q"):
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
