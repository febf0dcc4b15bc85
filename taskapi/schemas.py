"""Every marshmallow schema: request bodies and responses."""

from datetime import UTC

from marshmallow import (
    EXCLUDE,
    Schema,
    ValidationError,
    fields,
    missing,
    post_load,
    pre_load,
    validate,
    validates_schema,
)

from .dates import is_time_zone
from .models import PRIORITIES, Task
from .recurrence import RuleError, get_parts

BIGINT_MAX = 2**63 - 1  # the largest task id either database can hold
COLOR = "Must be a colour as #rrggbb."
POSITION = (
    "Orders siblings (a user's lists; the tasks of one list under one parent) as plain "
    "strings, byte by byte. Set by the server; change it with a move."
)
SORTABLE = ["created_at", "updated_at", "due_at", "priority", "title", "position"]
DEFAULT_SORT = "-created_at"
PAGINATION = {"page", "page_size"}  # read by @blp.paginate, not by the filter schema


class Text(fields.String):
    """A string PostgreSQL can store: no NUL characters, no unpaired surrogates. With
    strip=True it is trimmed after validation, so the limits apply to the text as sent, as
    the OpenAPI document states them (its maxLength cannot say "after trimming")."""

    def __init__(self, *args, strip=False, **kwargs):
        self.strip = strip
        super().__init__(*args, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        if "\x00" in text:
            raise ValidationError("Must not contain NUL characters.")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ValidationError("Must be valid Unicode (no unpaired surrogates).") from None
        return text

    def deserialize(self, value, attr=None, data=None, **kwargs):
        text = super().deserialize(value, attr, data, **kwargs)
        return text.strip() if self.strip and isinstance(text, str) else text


# Something left after trimming; documented as the pattern, which JSON Schema finds anywhere.
NOT_BLANK = validate.Regexp(r"\s*\S", error="Must not be blank.")


class Email(Text):
    """An address of at most 254 characters, stored and compared lowercase."""

    def __init__(self, **kwargs):
        validators = [validate.Length(max=254), validate.Email()]
        super().__init__(validate=validators, metadata={"format": "email"}, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        return super()._deserialize(value, attr, data, **kwargs).lower()


class UTCDateTime(fields.AwareDateTime):
    """A time with its offset, kept in UTC: what comes back is always +00:00."""

    def _deserialize(self, value, attr, data, **kwargs):
        try:
            return super()._deserialize(value, attr, data, **kwargs).astimezone(UTC)
        except OverflowError:  # 0001-01-01 at a positive offset is before year 1 in UTC
            raise ValidationError("Out of range: years 1 to 9999, in UTC.") from None


class StoredDateTime(UTCDateTime):
    """A time that a JSON column keeps as its ISO text: dumped as it is kept."""

    def _serialize(self, value, attr, obj, **kwargs):
        return value if isinstance(value, str) else super()._serialize(value, attr, obj, **kwargs)


class StrictBoolean(fields.Boolean):
    """Only JSON true and false: "yes", 1 or "0" are type errors, not guesses."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


PASSWORD_RULE = (
    "At least PASSWORD_MIN_LENGTH characters (8 unless configured), at most 72 bytes of UTF-8 "
    "(bcrypt's limit; never truncated), and not easy to guess: not a commonly used password, "
    "not a pattern, not made from the account's email or name. A refusal says which."
)


def at_most_72_bytes(password):
    if len(password.encode("utf-8")) > 72:
        raise ValidationError("Must be at most 72 bytes in UTF-8 (bcrypt's limit).")


DEVICE_TOKEN = (
    "Given with every sign-in and sign-up: send it with this device's next sign-ins, so a "
    "stranger guessing the account's password from elsewhere never locks this device out."
)
DEVICE_NAME = "Names the new session (GET /api/auth/sessions); the User-Agent when absent."


def device_name():
    return Text(
        load_only=True,
        strip=True,
        validate=validate.Length(max=100),
        metadata={"description": DEVICE_NAME},
    )


class CredentialsSchema(Schema):
    email = Email(required=True)
    password = Text(required=True, validate=at_most_72_bytes, load_only=True)
    device_token = Text(
        load_only=True, validate=validate.Length(max=500), metadata={"description": DEVICE_TOKEN}
    )
    device_name = device_name()


def new_password():
    return Text(
        required=True,
        validate=at_most_72_bytes,
        load_only=True,
        metadata={"description": PASSWORD_RULE, "minLength": 8, "maxLength": 72},
    )


class SignupSchema(CredentialsSchema):
    password = new_password()
    name = Text(strip=True, allow_none=True, validate=validate.Length(max=100))

    class Meta:
        exclude = ["device_token"]


class UserSchema(Schema):
    id = fields.String(dump_only=True)
    email = fields.String(dump_only=True)
    email_verified = fields.Boolean(dump_only=True)
    name = fields.String(dump_only=True, allow_none=True)
    time_zone = fields.String(dump_only=True, metadata={"example": "Europe/Berlin"})
    created_at = fields.AwareDateTime(dump_only=True)


class TokenSchema(Schema):
    user = fields.Nested(UserSchema, required=True)
    access_token = fields.String(required=True)
    token_type = fields.String(required=True, metadata={"example": "bearer"})
    expires_in = fields.Integer(required=True, metadata={"description": "Seconds until expiry."})
    refresh_token = fields.String(
        required=True,
        metadata={"description": "For POST /api/auth/refresh, once: each refresh gives a new one."},
    )
    refresh_expires_in = fields.Integer(
        required=True, metadata={"description": "Seconds until the refresh token expires."}
    )
    device_token = fields.String(metadata={"description": DEVICE_TOKEN})


class RefreshSchema(Schema):
    refresh_token = Text(required=True, load_only=True, validate=validate.Length(max=200))


class SessionSchema(Schema):
    id = fields.String(dump_only=True)
    label = fields.String(dump_only=True, metadata={"example": "Firefox on a laptop"})
    created_at = fields.AwareDateTime(dump_only=True)
    last_used_at = fields.AwareDateTime(dump_only=True, metadata={"description": "To the minute."})
    expires_at = fields.AwareDateTime(dump_only=True)
    current = fields.Boolean(dump_only=True, metadata={"description": "This request's session."})


class EmailSchema(Schema):
    email = Email(required=True)


class EmailTokenSchema(Schema):
    token = Text(required=True, load_only=True, validate=validate.Length(max=200))


class PasswordResetSchema(EmailTokenSchema):
    new_password = new_password()


class CalendarFeedSchema(Schema):
    url = fields.String(
        dump_only=True,
        metadata={"description": "Secret: whoever has it reads the feed, until it is revoked."},
    )


class AcceptedSchema(Schema):
    message = fields.String(required=True)


RULE = (
    "An RFC 5545 RRULE's parts: FREQ (HOURLY to YEARLY), INTERVAL, COUNT, UNTIL, BYDAY, "
    "BYMONTHDAY, BYMONTH, BYSETPOS, BYHOUR, BYMINUTE (one), WKST. Occurrences are on the wall "
    "clock of the user's time zone. The current due is the first occurrence: a COUNT counts "
    "down as occurrences pass. UNTIL is a date for an all-day task, a UTC time (...Z) otherwise."
)


def is_rule(text):
    try:
        get_parts(text)
    except RuleError as error:
        raise ValidationError(str(error)) from None


RecurrenceSchema = Schema.from_dict(
    {
        "rule": Text(
            required=True,
            validate=[validate.Length(max=500), is_rule],
            metadata={"description": RULE, "example": "FREQ=WEEKLY;BYDAY=MO,WE"},
        ),
        "from": fields.String(
            load_default="due",
            validate=validate.OneOf(["due", "completion"]),
            metadata={
                "description": "Completing moves the due to the rule's next occurrence after "
                "the due and the moment of completion (due), or counted from that moment "
                "(completion)."
            },
        ),
    },
    name="RecurrenceSchema",
)


class ReminderSchema(Schema):
    id = fields.Integer(
        strict=True,
        validate=validate.Range(1, 2**53 - 1),
        metadata={"description": "Set by the server; send it back to keep a reminder's id."},
    )
    at = StoredDateTime(metadata={"description": "Fires at this instant."})
    before = fields.Integer(
        strict=True,
        validate=validate.Range(0, 366 * 24 * 3600),
        metadata={"description": "Fires this many seconds before the due."},
    )
    fires_at = fields.String(
        metadata={
            "format": "date-time",
            "readOnly": True,
            "description": "Set by the server; ignored when sent back with the rest.",
        }
    )

    @validates_schema
    def at_or_before(self, reminder, **kwargs):
        if ("at" in reminder) == ("before" in reminder):
            raise ValidationError("Give at or before, one of them.", "at")

    @post_load
    def drop_fires_at(self, reminder, **kwargs):
        reminder.pop("fires_at", None)
        return reminder


class TaskSchema(Schema):
    id = fields.Integer(dump_only=True)
    user_id = fields.String(dump_only=True)
    title = Text(
        required=True,
        strip=True,
        validate=[validate.Length(1, 200), NOT_BLANK],
    )
    description = Text(allow_none=True, load_default=None, validate=validate.Length(max=10000))
    completed = StrictBoolean(load_default=False)
    priority = fields.String(load_default="none", validate=validate.OneOf(PRIORITIES))
    due_at = UTCDateTime(allow_none=True, load_default=None)
    due_date = fields.Date(
        allow_none=True,
        load_default=None,
        metadata={"description": "An all-day task's day: due at its end in the user's time zone."},
    )
    tags = fields.List(
        Text(strip=True, validate=[validate.Length(1, 50), NOT_BLANK]),
        load_default=list,
        validate=validate.Length(max=20),
        metadata={"description": "Up to 20 tags of 1 to 50 characters; duplicates are dropped."},
    )
    completed_at = fields.AwareDateTime(dump_only=True, allow_none=True)
    deleted_at = fields.AwareDateTime(
        dump_only=True, allow_none=True, metadata={"description": "Set on tombstones only."}
    )
    created_at = fields.AwareDateTime(dump_only=True)
    updated_at = fields.AwareDateTime(dump_only=True)
    list_id = fields.Integer(dump_only=True, metadata={"description": "Changed by a move only."})
    parent_id = fields.Integer(
        dump_only=True, allow_none=True, metadata={"description": "Changed by a move only."}
    )
    position = fields.String(dump_only=True, metadata={"description": POSITION})
    recurrence = fields.Nested(
        RecurrenceSchema,
        allow_none=True,
        load_default=None,
        metadata={"description": "Null, or how the task repeats; it needs a due."},
    )
    reminders = fields.List(
        fields.Nested(ReminderSchema),
        load_default=list,
        validate=validate.Length(max=5),
        metadata={"description": "Up to 5; those of a recurring task move with its due."},
    )

    @validates_schema
    def one_kind_of_due(self, task, **kwargs):
        if task.get("due_at") is not None and task.get("due_date") is not None:
            raise ValidationError("Give due_at or due_date, not both.", "due_date")

    @post_load
    def drop_duplicate_tags(self, task, **kwargs):
        if "tags" in task:
            task["tags"] = list(dict.fromkeys(task["tags"]))
        return task

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # JSON keys (the tasks table's columns), and the peewee field names rows use for them
        self.sources = {name: Task._meta.columns[name].name for name in self.dump_fields}
        self.times = [
            n
            for n, field in self.dump_fields.items()
            if isinstance(field, fields.DateTime | fields.Date)
        ]

    def dump(self, obj, *, many=None):
        """Tasks as peewee reads them are already in JSON's types, times aside, so they are
        dumped in one pass instead of marshmallow's calls per field and value: a page of 100
        costs a fraction as much. Takes Task models or rows of Task.select().dicts(); the tests
        prove the output is marshmallow's own (Schema.dump)."""
        many = self.many if many is None else many
        dumped = [
            self.dump_row(task if isinstance(task, dict) else task.__data__)
            for task in (obj if many else [obj])
        ]
        return dumped if many else dumped[0]

    def dump_row(self, row):
        task = {name: row.get(source) for name, source in self.sources.items()}
        for name in self.times:
            if task[name] is not None:
                task[name] = task[name].isoformat()
        return task


class TaskCompletionSchema(Schema):
    completed_at = fields.AwareDateTime(dump_only=True)
    due_at = fields.AwareDateTime(dump_only=True, allow_none=True)
    due_date = fields.Date(dump_only=True, allow_none=True)


class FiringSchema(Schema):
    task_id = fields.Integer(dump_only=True)
    reminder_id = fields.Integer(dump_only=True)
    fires_at = fields.String(dump_only=True, metadata={"format": "date-time"})
    title = fields.String(dump_only=True)
    due_at = fields.String(dump_only=True, allow_none=True, metadata={"format": "date-time"})
    due_date = fields.String(dump_only=True, allow_none=True, metadata={"format": "date"})


def row_id(strict=True, **kwargs):
    """A list's or a task's id: a JSON integer in a body, digits in a query string."""
    return fields.Integer(strict=strict, validate=validate.Range(1, BIGINT_MAX), **kwargs)


class TaskCreateSchema(TaskSchema):
    list_id = row_id(
        load_default=None,
        metadata={
            "description": "The inbox when absent (the parent's list if parent_id is given)."
        },
    )
    parent_id = row_id(
        load_default=None, allow_none=True, metadata={"description": "A task of the same list."}
    )


class PreviousSchema(Schema):
    previous_id = row_id(
        load_default=None,
        allow_none=True,
        metadata={"description": "Goes right after this sibling; first when null or absent."},
    )


class TaskMoveSchema(PreviousSchema):
    list_id = row_id(
        metadata={"description": "When absent: the parent's list, or else the task's own."}
    )
    parent_id = row_id(
        load_default=None,
        allow_none=True,
        metadata={"description": "Top level when null or absent."},
    )


class Patch:
    """Any subset of the writable fields (use with partial=True): what is left out stays as
    it is, so no field has a default here, in loading or in the OpenAPI document."""

    def on_bind_field(self, field_name, field_obj):
        field_obj.load_default = missing


class TaskPatchSchema(Patch, TaskSchema):
    pass


class QueryBoolean(fields.Boolean):
    """true or false, spelled out: a query string has no other booleans."""

    def __init__(self, **kwargs):
        super().__init__(truthy={"true"}, falsy={"false"}, **kwargs)


class QueryArgsSchema(Schema):
    """Query parameters: any other than these is refused, not ignored."""

    ALSO_READ = frozenset()  # parameters that another decorator reads

    @validates_schema(pass_original=True)
    def refuse_unknown_parameters(self, data, original, **kwargs):
        unknown = set(original) - {field.data_key or name for name, field in self.fields.items()}
        if unknown := unknown - self.ALSO_READ:
            raise ValidationError({name: ["Unknown parameter."] for name in sorted(unknown)})


class SyncArgsSchema(QueryArgsSchema):
    """What a syncing client sends."""

    updated_since = UTCDateTime(
        metadata={"description": "Changed after this time (with include_deleted: deletions too)"}
    )
    include_deleted = QueryBoolean(
        load_default=False, metadata={"description": "Also list tombstones (deleted_at set)"}
    )


class TaskQueryArgsSchema(SyncArgsSchema):
    ALSO_READ = PAGINATION
    completed = QueryBoolean()
    priority = fields.String(validate=validate.OneOf(PRIORITIES))
    tag = fields.List(
        Text(strip=True, validate=[validate.Length(1, 50), NOT_BLANK]),
        validate=validate.Length(max=20),
        metadata={"description": "Repeat for several: tasks carrying all of them."},
    )
    due_before = UTCDateTime()
    due_after = UTCDateTime()
    q = Text(
        validate=validate.Length(1, 200),
        metadata={"description": "Case-insensitive search in title and description"},
    )
    sort = fields.String(
        load_default=DEFAULT_SORT,
        validate=validate.OneOf(SORTABLE + [f"-{name}" for name in SORTABLE]),
        metadata={
            "description": "A field, or -field for descending; ties go by id. position (with "
            "list_id): the list as it is shown, each task followed by its subtasks."
        },
    )
    list_id = row_id(strict=False, metadata={"description": "This list's tasks, subtasks too"})
    parent_id = row_id(strict=False, metadata={"description": "The subtasks right under this task"})
    overdue = QueryBoolean(
        metadata={"description": "true: open tasks whose due has passed; false: all the others"}
    )
    after = fields.String(
        validate=validate.Length(1, 2000),
        metadata={
            "description": "The next page: the `next_cursor` of the page before (X-Pagination), "
            "with the same sort. Instead of `page`, and as fast however deep."
        },
    )

    @validates_schema
    def position_needs_a_list(self, data, **kwargs):
        if data.get("sort", "").lstrip("-") == "position" and "list_id" not in data:
            raise ValidationError("Needs list_id: positions order the tasks of one list.", "sort")


class ListSchema(Schema):
    id = fields.Integer(dump_only=True)
    name = Text(required=True, strip=True, validate=[validate.Length(1, 100), NOT_BLANK])
    color = Text(
        allow_none=True,
        load_default=None,
        validate=[validate.Length(equal=7), validate.Regexp(r"^#[0-9a-fA-F]{6}$", error=COLOR)],
        metadata={"example": "#3b82f6"},
    )
    is_inbox = fields.Boolean(dump_only=True)
    position = fields.String(dump_only=True, metadata={"description": POSITION})
    task_count = fields.Integer(dump_only=True, metadata={"description": "Its live tasks."})
    created_at = fields.AwareDateTime(dump_only=True)
    updated_at = fields.AwareDateTime(dump_only=True)
    deleted_at = fields.AwareDateTime(
        dump_only=True, allow_none=True, metadata={"description": "Set on tombstones only."}
    )


class ListPatchSchema(Patch, ListSchema):
    pass


class TaskBulkUpdateSchema(Schema):
    ids = fields.List(
        fields.Integer(strict=True, validate=validate.Range(1, BIGINT_MAX)),
        required=True,
        validate=validate.Length(1, 500),
    )
    completed = StrictBoolean(required=True)


class TaskBulkDeleteArgsSchema(Schema):
    completed = QueryBoolean(
        required=True,
        validate=validate.Equal(True, error="Only completed=true: clearing open tasks is refused."),
    )
    list_id = row_id(strict=False, metadata={"description": "Only this list's tasks"})


class DeletedSchema(Schema):
    deleted = fields.Integer(required=True, metadata={"description": "How many tasks went"})


def an_iana_time_zone(name):
    if not is_time_zone(name):
        raise ValidationError("Must be an IANA time zone, such as Europe/Berlin or UTC.")


class ProfileSchema(Schema):
    """Any of these (a body without them changes nothing)."""

    name = Text(strip=True, allow_none=True, validate=validate.Length(max=100))
    time_zone = Text(
        validate=an_iana_time_zone,
        metadata={"description": "All-day tasks are due at the end of their day here."},
    )

    @validates_schema
    def something_to_change(self, data, **kwargs):
        if not data:
            raise ValidationError("Send name, time_zone or both.", "_schema")


class PasswordChangeSchema(Schema):
    current_password = Text(required=True, load_only=True, validate=at_most_72_bytes)
    new_password = new_password()


class AccountDeleteSchema(Schema):
    password = Text(
        load_only=True,
        validate=at_most_72_bytes,
        metadata={"description": "Required for accounts that have one (signed up here)."},
    )


class TokenUserSchema(Schema):
    """The user a frontend-signed token describes, to provision on first use."""

    class Meta:
        unknown = EXCLUDE

    email = Email(required=True)
    name = Text(allow_none=True, load_default=None)

    @pre_load
    def shorten_name(self, claims, **kwargs):
        if isinstance(claims.get("name"), str):
            claims = {**claims, "name": claims["name"][:100]}
        return claims


class WindowArgsSchema(QueryArgsSchema):
    start = UTCDateTime(required=True, data_key="from")
    end = UTCDateTime(
        required=True, data_key="to", metadata={"description": "After from, at most 366 days on."}
    )
