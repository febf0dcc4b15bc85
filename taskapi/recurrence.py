"""Recurring tasks: the next occurrence of a task's RFC 5545 rule, in its user's time zone.

A recurring task stays one row. Completing it moves its due to the next occurrence (see
tasks.update_task): for "from": "due", the first after both the current due and the moment of
completion; for "from": "completion", the rule counted from that moment. The rule always
describes the series from the current due, which counts as its first occurrence (DTSTART, as
RFC 5545 has it): so a COUNT counts down as occurrences pass, and a calendar app reads the
remaining series as it is (calendar feeds).

python-dateutil's rrule parses and expands the rules. A timed task's occurrences are computed
on the wall clock of the user's zone (09:00 stays 09:00 across daylight saving); an all-day
task's on plain days. Two costs dateutil does not bound are bounded here: a rule must not fire
more often than hourly, and no expansion walks centuries of empty periods (dateutil looks for
an occurrence until year 9999, seconds of CPU for a rule that has none).
"""

import re
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from dateutil.relativedelta import relativedelta
from dateutil.rrule import DAILY, HOURLY, MONTHLY, WEEKLY, YEARLY, rrulestr

FREQUENCIES = {
    "HOURLY": HOURLY,
    "DAILY": DAILY,
    "WEEKLY": WEEKLY,
    "MONTHLY": MONTHLY,
    "YEARLY": YEARLY,
}
PARTS = {"FREQ", "INTERVAL", "COUNT", "UNTIL", "BYDAY", "BYMONTHDAY", "BYMONTH", "BYSETPOS"}
PARTS |= {"BYHOUR", "BYMINUTE", "WKST"}
RULE = re.compile(r"[A-Z]+=[A-Z0-9,+-]+(;[A-Z]+=[A-Z0-9,+-]+)*")
MAX_INTERVAL = 1000
MAX_COUNT = 1000
EARLIEST = date(1900, 1, 1)  # a recurring task's due, so that counting from it stays cheap
PROBE_YEAR = 9960  # an occurrence must exist in the decades before the last year there is
STEPS = {HOURLY: timedelta(hours=1), DAILY: timedelta(days=1), WEEKLY: timedelta(weeks=1)}
MONTHS = {MONTHLY: 1, YEARLY: 12}


# What dateutil raises for rules it cannot run (out-of-range numbers, empty sets).
DATEUTIL_ERRORS = (ValueError, IndexError, OverflowError, TypeError)


class RuleError(ValueError):
    """A rule taskapi does not run, with the reason a client is told."""


def get_parts(text):
    if not RULE.fullmatch(text):
        raise RuleError("Must be an RRULE's parts, as FREQ=WEEKLY;BYDAY=MO,WE (no RRULE: prefix).")
    parts = dict(part.split("=", 1) for part in text.split(";"))
    if len(parts) < text.count(";") + 1:
        raise RuleError("Each part at most once (RFC 5545).")
    if unknown := sorted(parts.keys() - PARTS):
        raise RuleError(f"Not supported here: {', '.join(unknown)}.")
    if parts.get("FREQ") not in FREQUENCIES:
        raise RuleError("FREQ must be HOURLY, DAILY, WEEKLY, MONTHLY or YEARLY (at most hourly).")
    for name, most in ("INTERVAL", MAX_INTERVAL), ("COUNT", MAX_COUNT):
        if name in parts and not (parts[name].isdigit() and 1 <= int(parts[name]) <= most):
            raise RuleError(f"{name} must be a whole number from 1 to {most}.")
    if "," in parts.get("BYMINUTE", ""):
        raise RuleError("BYMINUTE takes one minute: more would fire more often than hourly.")
    if parts.keys() >= {"COUNT", "UNTIL"}:
        raise RuleError("COUNT or UNTIL, not both (RFC 5545).")
    if parts["FREQ"] == "HOURLY" and "BYSETPOS" in parts:
        raise RuleError("BYSETPOS needs a longer FREQ than HOURLY.")
    if parts["FREQ"] not in ("MONTHLY", "YEARLY") and re.search(r"\d", parts.get("BYDAY", "")):
        raise RuleError("BYDAY takes numbers (1MO, -1FR) with MONTHLY or YEARLY only.")
    if re.search(r"(^|,)[+-]?0+(,|$)", parts.get("BYMONTHDAY", "")):
        raise RuleError("BYMONTHDAY counts from 1 (or from -1 at the end of the month).")
    return parts


def parse(text, start):
    """The rule as dateutil's rrule from `start` (a naive midnight for an all-day task, a time
    in the user's zone for a timed one), without its COUNT, which is counted here; RuleError
    if taskapi does not run it. The defaults dateutil takes from DTSTART are written out, so
    that the rule can start again from any period of its own (see restart)."""
    parts = get_parts(text)
    if start.date() < EARLIEST:
        raise RuleError("A recurring task must be due in 1900 or later.")
    hourly = parts["FREQ"] == "HOURLY" or parts.keys() & {"BYHOUR", "BYMINUTE"}
    if start.tzinfo is None and hourly:
        raise RuleError("An all-day task repeats by days: no HOURLY, BYHOUR or BYMINUTE.")
    try:
        return expand_defaults(rrulestr(text, dtstart=start), parts, start)
    except RuleError:
        raise
    except DATEUTIL_ERRORS as error:
        if "UNTIL" in str(error):
            raise RuleError(
                "UNTIL must be a date (20261231) for a task with a due_date, a time in UTC "
                "(20261231T170000Z) for one with a due_at."
            ) from None
        raise RuleError(f"Not a valid rule: {error or type(error).__name__}.") from None


def expand_defaults(rule, parts, start):
    frequency, defaults = FREQUENCIES[parts["FREQ"]], {"count": None, "bysecond": start.second}
    if frequency != HOURLY and "BYHOUR" not in parts:
        defaults["byhour"] = start.hour
    if "BYMINUTE" not in parts:
        defaults["byminute"] = start.minute
    if not parts.keys() & {"BYDAY", "BYMONTHDAY"}:
        if frequency == YEARLY:
            defaults |= {"bymonthday": start.day, "bymonth": rule._bymonth or start.month}
        elif frequency == MONTHLY:
            defaults["bymonthday"] = start.day
        elif frequency == WEEKLY:
            defaults["byweekday"] = start.weekday()
    rule = rule.replace(**defaults)
    probe = restart(rule.replace(until=None), probe_start(start))
    if probe.after(probe._dtstart, inc=True) is None:  # 40 years of periods at most
        raise RuleError("This rule has no occurrence.")
    return rule


def probe_start(start):
    return start.replace(year=PROBE_YEAR, month=1, day=1)


def restart(rule, target):
    """The rule started again from its latest period that begins at or before `target`: the
    same occurrences after `target`, found without walking every period since its start."""
    start, interval = rule._dtstart, rule._interval
    naive = start.replace(tzinfo=None)
    wall = target.astimezone(start.tzinfo).replace(tzinfo=None) if start.tzinfo else target
    if wall <= naive:
        return rule
    if rule._freq in STEPS:
        step = STEPS[rule._freq] * interval
        moved = naive + (wall - naive) // step * step
    else:  # the first moment of the month (or year) the period starts in
        months = MONTHS[rule._freq] * interval
        elapsed = (wall.year - naive.year) * 12 + wall.month - naive.month
        moved = naive + relativedelta(months=elapsed // months * months)
        first = {"month": 1} if rule._freq == YEARLY else {}
        moved = datetime.combine(moved.replace(day=1, **first), time())
    return rule.replace(dtstart=moved.replace(tzinfo=start.tzinfo))


def find_after(rule, moment):
    """The rule's first occurrence after `moment` (from its start when None), or None."""
    try:
        return rule.after(moment, inc=False) if moment else rule.after(rule._dtstart, inc=True)
    except OverflowError:  # next to the last day there is, in some zone
        return None


def get_start(due_at, due_date, time_zone):
    if due_date is not None:
        return datetime.combine(due_date, time())
    try:
        return due_at.astimezone(ZoneInfo(time_zone))
    except OverflowError:  # past the last day there is, on the user's wall clock
        raise RuleError("A recurring task is due before the year 10000 on your clock.") from None


def check(recurrence, due_at, due_date, time_zone):
    """RuleError unless the recurrence can run from this due."""
    if due_at is None and due_date is None:
        raise RuleError("A recurring task needs a due_at or a due_date.")
    start = get_start(due_at, due_date, time_zone)
    if find_after(parse(recurrence["rule"], start), start - timedelta(microseconds=1)) is None:
        raise RuleError("UNTIL comes before the rule's first occurrence from the due.")


def advance(recurrence, due_at, due_date, now, time_zone):
    """Completing at `now`: the next (due_at, due_date, recurrence), or None when the rule has
    no further occurrence."""
    start = get_start(due_at, due_date, time_zone)
    completed = now.astimezone(ZoneInfo(time_zone))
    if due_date is not None:
        completed = datetime.combine(completed.date(), time())  # the day, as all-day tasks see it
    count = get_count(recurrence)
    if count == 1:
        return None
    if recurrence["from"] == "completion":  # from the day of completion, at the due's time
        anchor = datetime.combine(completed.date(), start.timetz())
        passed, after = 0, find_after(parse(recurrence["rule"], anchor), max(anchor, completed))
    else:
        rule = parse(recurrence["rule"], start)
        passed, after = find_next(rule, max(start, completed), count)
    if after is None:
        return None
    if count is not None:
        recurrence = recurrence | {"rule": set_count(recurrence["rule"], count - 1 - passed)}
    if due_date is not None:
        return None, after.date(), recurrence
    return after.astimezone(UTC), None, recurrence


def find_next(rule, moment, count):
    """The first occurrence after `moment`, and how many of the rule's occurrences it passed
    on the way (they count towards a COUNT). Without a COUNT, the rule restarts near `moment`."""
    if count is None:
        return 0, find_after(restart(rule, moment), moment)
    passed = 0
    for occurrence in rule.xafter(rule._dtstart, count=count - 1):
        if occurrence > moment:
            return passed, occurrence
        passed += 1
    return passed, None


def get_count(recurrence):
    found = re.search(r"(?:^|;)COUNT=(\d+)", recurrence["rule"])
    return int(found.group(1)) if found else None


def set_count(text, count):
    return re.sub(r"(^|;)COUNT=\d+", rf"\g<1>COUNT={count}", text)


def plan(task, fields, now, time_zone):
    """What a write of `fields` to `task` sets under its recurrence, the one it has or the one
    the write gives it, and the record of the completion it moved on from (else None). A
    completion of a recurring task moves its due to the next occurrence and leaves it open;
    when there is none, it completes as any task does. RuleError if the rule cannot run."""
    repeat = fields["recurrence"] if "recurrence" in fields else task.recurrence
    if repeat is None:
        return fields, None
    repeat = {"from": "due", **repeat}  # a PATCH may leave "from" out
    due_at, due_date = get_due(task, fields)
    check(repeat, due_at, due_date, time_zone)
    fields = fields | {"recurrence": repeat}
    completing = not task.completed and fields.get("completed", False) is not False  # or a toggle
    moved = completing and advance(repeat, due_at, due_date, now, time_zone)
    if not moved:
        return fields, None
    next_at, next_date, repeat = moved
    moved_on = {"completed": False, "due_at": next_at, "due_date": next_date, "recurrence": repeat}
    return fields | moved_on, {"due_at": due_at, "due_date": due_date}


def get_due(task, fields):
    """The due a write of `fields` leaves `task` with, as (due_at, due_date)."""
    if fields.get("due_at") is not None:
        return fields["due_at"], None
    if fields.get("due_date") is not None:
        return None, fields["due_date"]
    return fields.get("due_at", task.due_at), fields.get("due_date", task.due_date)
