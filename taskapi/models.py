"""peewee models, mirroring schema.sql column for column."""

import json
from datetime import UTC, datetime

from peewee import (
    BigAutoField,
    BigIntegerField,
    BooleanField,
    CompositeKey,
    DateField,
    DateTimeField,
    DoubleField,
    ForeignKeyField,
    IntegerField,
    Model,
    SmallIntegerField,
    SqliteDatabase,
    TextField,
)

from .db import Prepared, Slot, database

PRIORITIES = ("none", "low", "medium", "high")  # stored as 0 to 3, so they sort by urgency


def utcnow() -> datetime:
    return datetime.now(UTC)


class TimestampField(DateTimeField):
    """TIMESTAMP WITH TIME ZONE, always read back as an aware UTC datetime.

    PostgreSQL gets aware values, so whatever zone a session runs in (PgBouncer may drop the
    UTC that db.py asks for), nothing shifts. SQLite stores naive UTC text, and the zone is
    attached again on the way out."""

    field_type = "TIMESTAMPTZ"

    def db_value(self, value):
        aware = isinstance(value, datetime) and value.tzinfo is not None
        if aware and isinstance(self.model._meta.database.obj, SqliteDatabase):
            value = value.astimezone(UTC).replace(tzinfo=None)
        return super().db_value(value)

    def python_value(self, value):
        if value is None or isinstance(value, datetime) and value.tzinfo is UTC:
            return value  # PostgreSQL in UTC: kept cheap, as a page of 50 tasks reads 250 of them
        value = super().python_value(value)
        if isinstance(value, datetime) and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        if isinstance(value, datetime) and value.utcoffset():
            return value.astimezone(UTC)  # a session in another zone
        return value


class PriorityField(SmallIntegerField):
    def db_value(self, value):
        return PRIORITIES.index(value) if isinstance(value, str) else value

    def python_value(self, value):
        return PRIORITIES[value] if value is not None else value


class JSONField(TextField):
    def db_value(self, value):
        return json.dumps(value) if value is not None else value

    def python_value(self, value):
        return json.loads(value) if value is not None else value


class RemindersField(JSONField):
    """A list, stored as null when empty: tasks without reminders are found by IS NULL."""

    def db_value(self, value):
        return super().db_value(value or None)

    def python_value(self, value):
        return super().python_value(value) or []


class BaseModel(Model):
    class Meta:
        database = database


class User(BaseModel):
    id = TextField(primary_key=True)
    email = TextField()
    name = TextField(null=True)
    password_hash = TextField(null=True)
    created_at = TimestampField(default=utcnow)
    task_count = IntegerField(default=0)  # kept by the database's triggers; read-only here
    email_verified = BooleanField(default=False)
    time_zone = TextField(default="UTC")
    webhook_count = IntegerField(default=0)  # kept by webhooks.py; read-only elsewhere

    class Meta:
        table_name = "users"

    @classmethod
    def delete_for_good(cls, user_id):
        """Delete the account (its tasks and sessions go with it: ON DELETE CASCADE) and keep
        its id in deleted_users, so that no token naming it brings it back. Call it inside a
        transaction: the two writes stand or fall together."""
        cls.delete().where(cls.id == user_id).execute()
        DeletedUser.insert(id=user_id).on_conflict_ignore().execute()


class TaskList(BaseModel):
    """A list (project) of tasks; every user has one inbox (see lists.py)."""

    id = BigAutoField()
    user = ForeignKeyField(User, column_name="user_id", on_delete="CASCADE")
    name = TextField()
    color = TextField(null=True)
    is_inbox = BooleanField(default=False)
    position = TextField()
    task_count = IntegerField(default=0)  # kept by the database's triggers; read-only here
    created_at = TimestampField(default=utcnow)
    updated_at = TimestampField(default=utcnow)
    deleted_at = TimestampField(null=True)

    class Meta:
        table_name = "lists"

    @classmethod
    def of(cls, user_id):
        """The user's live lists."""
        return cls.select().where(cls.user == user_id, cls.deleted_at.is_null())


class Task(BaseModel):
    id = BigAutoField()
    user = ForeignKeyField(User, column_name="user_id", on_delete="CASCADE")
    title = TextField()
    description = TextField(null=True)
    completed = BooleanField(default=False)
    created_at = TimestampField(default=utcnow)
    updated_at = TimestampField(default=utcnow)
    priority = PriorityField(default="none")
    due_at = TimestampField(null=True)
    tags = JSONField(default=list)
    completed_at = TimestampField(null=True)
    deleted_at = TimestampField(null=True)
    task_list = ForeignKeyField(TaskList, column_name="list_id", on_delete="CASCADE")
    parent = ForeignKeyField("self", column_name="parent_id", null=True, on_delete="CASCADE")
    position = TextField()  # among its siblings (see positions.py)
    path = TextField()  # its place in its list's display order (see positions.py)
    due_date = DateField(null=True)
    due_key = TimestampField(null=True)  # when it is due, either kind (see dates.py)
    recurrence = JSONField(null=True)  # {"rule", "from"} (see recurrence.py)
    reminders = RemindersField(null=True)  # [{"id", "at" or "before", "fires_at"}] (reminders.py)

    class Meta:
        table_name = "tasks"

    @classmethod
    def of(cls, user_id, *fields):
        """The user's live tasks: tombstones are invisible unless asked for. Without `fields`,
        all but due_key, which only filters and sorts read (a page skips reading it)."""
        live = [cls.user == user_id, cls.deleted_at.is_null()]
        return cls.select(*(fields or cls.READ)).where(*live)


Task.READ = [field for field in Task._meta.sorted_fields if field is not Task.due_key]


class Completion(BaseModel):
    """A task's completion, with the due it had (a recurring task's moved on after it)."""

    id = BigAutoField()
    task = ForeignKeyField(Task, column_name="task_id", backref="completions", on_delete="CASCADE")
    completed_at = TimestampField()
    due_at = TimestampField(null=True)
    due_date = DateField(null=True)

    class Meta:
        table_name = "task_completions"


class ReminderFiring(BaseModel):
    """A reminder's firing still to come (see reminders.py)."""

    id = BigAutoField()
    task = ForeignKeyField(Task, column_name="task_id", on_delete="CASCADE")
    reminder_id = BigIntegerField()
    fires_at = TimestampField()

    class Meta:
        table_name = "reminder_firings"


class CalendarFeed(BaseModel):
    """A user's calendar feed URL, by its token's digest (see calendars.py)."""

    token_hash = TextField(primary_key=True)
    user = ForeignKeyField(User, column_name="user_id", on_delete="CASCADE")
    created_at = TimestampField(default=utcnow)

    class Meta:
        table_name = "calendar_feeds"


class TaskTag(BaseModel):
    task = ForeignKeyField(Task, column_name="task_id", on_delete="CASCADE")
    user = TextField(column_name="user_id")
    tag = TextField()

    class Meta:
        table_name = "task_tags"
        primary_key = CompositeKey("task", "tag")


class IdempotencyKey(BaseModel):
    user = ForeignKeyField(User, column_name="user_id", on_delete="CASCADE")
    idempotency_key = TextField()
    request_hash = TextField()
    response = TextField(null=True)
    created_at = TimestampField(default=utcnow)

    class Meta:
        table_name = "idempotency_keys"
        primary_key = CompositeKey("user", "idempotency_key")


class DeletedUser(BaseModel):
    """An account deleted here: a frontend token naming it is refused rather than bringing the
    account back, empty (Better Auth keeps minting tokens for the same id from its session)."""

    id = TextField(primary_key=True)
    deleted_at = TimestampField(default=utcnow)

    class Meta:
        table_name = "deleted_users"


class RateLimit(BaseModel):
    """One rate-limit window (see ratelimits.DatabaseStorage)."""

    key = TextField(primary_key=True)
    hits = IntegerField()
    expires_at = DoubleField()  # seconds since the epoch

    class Meta:
        table_name = "rate_limits"


class Session(BaseModel):
    """A signed-in device of an account that signs in here (see sessions.py)."""

    id = TextField(primary_key=True)
    user = ForeignKeyField(User, column_name="user_id", on_delete="CASCADE")
    label = TextField()
    created_at = TimestampField(default=utcnow)
    last_used_at = TimestampField(default=utcnow)
    expires_at = TimestampField()

    class Meta:
        table_name = "sessions"


class RefreshToken(BaseModel):
    token_hash = TextField(primary_key=True)
    session = ForeignKeyField(Session, column_name="session_id", on_delete="CASCADE")
    used_at = TimestampField(null=True)

    class Meta:
        table_name = "refresh_tokens"


class EmailToken(BaseModel):
    """A password-reset or verification link's token, by its digest (see verification.py)."""

    token_hash = TextField(primary_key=True)
    user = ForeignKeyField(User, column_name="user_id", on_delete="CASCADE")
    purpose = TextField()
    expires_at = TimestampField()
    used_at = TimestampField(null=True)

    class Meta:
        table_name = "email_tokens"


class Webhook(BaseModel):
    """Where a user's events are POSTed (see webhooks.py)."""

    id = BigAutoField()
    user = ForeignKeyField(User, column_name="user_id", on_delete="CASCADE")
    url = TextField()
    events = JSONField()
    secret = TextField()
    created_at = TimestampField(default=utcnow)

    class Meta:
        table_name = "webhooks"


class Outbox(BaseModel):
    """A delivery waiting to be made: mail, a webhook call (see delivery.py)."""

    id = BigAutoField()
    kind = TextField()
    payload = TextField()
    attempts = IntegerField(default=0)
    send_after = DoubleField()  # seconds since the epoch
    created_at = TimestampField(default=utcnow)
    webhook = ForeignKeyField(Webhook, column_name="webhook_id", null=True, on_delete="CASCADE")

    class Meta:
        table_name = "outbox"


# The two queries of every authenticated read, built once (see Prepared).
USER_BY_ID = Prepared(User.select().where(User.id == Slot("id")).limit(1))
# A token issued here: its user, if its session is still on.
USER_BY_SESSION = Prepared(
    User.select(User, Session.last_used_at, Session.expires_at)
    .join(Session)
    .where(Session.id == Slot("session_id"), User.id == Slot("id"))
    .limit(1)
)
TASK_BY_ID = Prepared(Task.of(Slot("user_id")).where(Task.id == Slot("id")).limit(1))
