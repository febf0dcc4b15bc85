"""Forgetting, for every user, what is kept only for a while: idempotency keys after a day,
deleted tasks and lists (tombstones) after TOMBSTONE_RETENTION_DAYS, and ended rate-limit
windows. A user's own writes purge their own; this purges everyone's, users who stopped
writing included.

The delivery worker of every process offers to run it once a minute; the first to claim the
hour runs it, the others find it claimed, so it runs once an hour for the whole service with
nothing more to start. It deletes in batches, so no statement holds a lock for long."""

import time

from peewee import Tuple

from . import delivery
from .models import IdempotencyKey, RateLimit, Task, TaskList, utcnow
from .ratelimits import DatabaseStorage
from .tasks import KEY_LIFETIME, get_tombstone_cutoff

PURGE_SECONDS = 3600
TRY_SECONDS = 60  # how often a process asks for the claim: not a write at every round
BATCH = 1000
CLAIM = "job:purge"
next_try = 0.0


@delivery.every_round
def offer_to_purge():
    global next_try
    if time.monotonic() < next_try:
        return 0
    next_try = time.monotonic() + TRY_SECONDS
    return purge_if_claimed()


def purge_if_claimed():
    """Purge, if this process claims this hour's run; how many rows went."""
    if DatabaseStorage().incr(CLAIM, PURGE_SECONDS) != 1:
        return 0
    now = utcnow()
    cutoff = get_tombstone_cutoff(now)
    purged = delete_all(IdempotencyKey, IdempotencyKey.created_at < now - KEY_LIFETIME)
    purged += delete_all(TaskList, TaskList.deleted_at < cutoff)  # with their tasks
    purged += delete_all(Task, Task.deleted_at < cutoff)  # with their subtasks
    return purged + delete_all(RateLimit, RateLimit.expires_at <= time.time())


def delete_all(model, expired):
    """Delete the rows matching `expired`, BATCH at a time; how many went."""
    key = model._meta.get_primary_keys()  # one field, or a composite key's
    deleted = 0
    while True:
        batch = model.select(*key).where(expired).limit(BATCH)
        count = model.delete().where(Tuple(*key).in_(batch)).execute()
        deleted += count
        if count < BATCH:
            return deleted
