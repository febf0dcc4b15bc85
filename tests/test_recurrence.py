"""Recurring tasks: the rule arithmetic on its own (a fixed "now"), then through HTTP on both
databases (dues in 2030, so that the moment of completion does not decide the next one)."""

import random
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from taskapi import recurrence
from taskapi.models import Completion, Task

BERLIN = "Europe/Berlin"


def at(text):
    return datetime.fromisoformat(text)


def advance(rule, due, now, start_from="due", zone=BERLIN):
    due_at, due_date = (
        (None, due) if isinstance(due, date) and not isinstance(due, datetime) else (due, None)
    )
    return recurrence.advance({"rule": rule, "from": start_from}, due_at, due_date, now, zone)


@pytest.mark.parametrize(
    "rule, due, now, expected",
    [
        # Monday 09:00 in Berlin, before and after the change to summer time (2026-03-29):
        (
            "FREQ=WEEKLY;BYDAY=MO",
            at("2026-03-23T08:00Z"),
            at("2026-03-23T09:00Z"),
            at("2026-03-30T07:00Z"),
        ),
        # ... and back to winter time (2026-10-25):
        (
            "FREQ=WEEKLY;BYDAY=MO",
            at("2026-10-19T07:00Z"),
            at("2026-10-19T07:30Z"),
            at("2026-10-26T08:00Z"),
        ),
        # completed late: the first occurrence after the moment of completion
        (
            "FREQ=WEEKLY;BYDAY=MO",
            at("2026-03-23T08:00Z"),
            at("2026-04-08T12:00Z"),
            at("2026-04-13T07:00Z"),
        ),
        # completed early: the first occurrence after the due
        (
            "FREQ=WEEKLY;BYDAY=MO",
            at("2026-03-23T08:00Z"),
            at("2026-03-20T12:00Z"),
            at("2026-03-30T07:00Z"),
        ),
        (
            "FREQ=DAILY;BYHOUR=9,17",
            at("2026-03-23T08:00Z"),
            at("2026-03-23T08:05Z"),
            at("2026-03-23T16:00Z"),
        ),
        (
            "FREQ=MONTHLY;BYMONTHDAY=-1",
            at("2026-01-31T08:00Z"),
            at("2026-01-31T09:00Z"),
            at("2026-02-28T08:00Z"),
        ),
        # a hundred years of hours since the due, found without walking them
        (
            "FREQ=HOURLY;INTERVAL=5",
            at("1926-03-23T08:00Z"),
            at("2026-03-23T08:30Z"),
            at("2026-03-23T13:00Z"),  # every 5 hours of Berlin's wall clock from 09:00
        ),
        # all-day: the first day after the day of completion (in Berlin: already the 2nd)
        ("FREQ=DAILY", date(2026, 12, 1), at("2026-12-01T23:30Z"), date(2026, 12, 3)),
        ("FREQ=DAILY", date(2026, 12, 1), at("2026-12-01T12:00Z"), date(2026, 12, 2)),
        ("FREQ=WEEKLY;BYDAY=SA,SU", date(2026, 12, 5), at("2026-12-05T12:00Z"), date(2026, 12, 6)),
        ("FREQ=YEARLY", date(2024, 2, 29), at("2024-02-29T12:00Z"), date(2028, 2, 29)),
    ],
)
def test_the_next_occurrence_from_the_due(rule, due, now, expected):
    due_at, due_date, _ = advance(rule, due, now)
    assert (
        due_date if isinstance(expected, date) and not isinstance(expected, datetime) else due_at
    ) == expected


def test_occurrences_keep_the_wall_clock_time_across_daylight_saving():
    due, now = at("2026-03-16T08:00Z"), at("2026-03-16T08:00Z")
    local = []
    for _ in range(4):
        due, _, _ = advance("FREQ=WEEKLY;BYDAY=MO", due, now)
        now = due
        local.append(due.astimezone(ZoneInfo(BERLIN)).strftime("%a %H:%M %Z"))
    assert local == ["Mon 09:00 CET", "Mon 09:00 CEST", "Mon 09:00 CEST", "Mon 09:00 CEST"]


@pytest.mark.parametrize(
    "rule, due, now, expected",
    [
        ("FREQ=DAILY;INTERVAL=3", date(2026, 12, 1), at("2026-12-05T12:00Z"), date(2026, 12, 8)),
        # at the due's time of day, counted from the day of completion
        ("FREQ=WEEKLY", at("2026-03-23T08:00Z"), at("2026-03-25T15:00Z"), at("2026-04-01T07:00Z")),
        ("FREQ=DAILY", at("2026-03-23T08:00Z"), at("2026-03-25T06:00Z"), at("2026-03-26T08:00Z")),
        # a rule within the day: the first occurrence after the moment of completion
        (
            "FREQ=HOURLY;INTERVAL=2",
            at("2026-12-07T08:00Z"),
            at("2026-12-07T17:30Z"),
            at("2026-12-07T18:00Z"),
        ),
    ],
)
def test_the_next_occurrence_from_completion(rule, due, now, expected):
    due_at, due_date, _ = advance(rule, due, now, "completion")
    assert (due_date or due_at) == expected


def test_count_counts_down_and_ends_the_series():
    day, now, seen = date(2026, 12, 1), at("2026-12-01T12:00Z"), []
    rule = "FREQ=DAILY;COUNT=3"
    while moved := recurrence.advance({"rule": rule, "from": "due"}, None, day, now, BERLIN):
        _, day, repeat = moved
        rule, now = repeat["rule"], now + timedelta(days=1)
        seen.append((day.isoformat(), rule))
    assert seen == [("2026-12-02", "FREQ=DAILY;COUNT=2"), ("2026-12-03", "FREQ=DAILY;COUNT=1")]


def test_occurrences_passed_by_a_late_completion_count_too():
    moved = advance("FREQ=DAILY;COUNT=5", date(2026, 12, 1), at("2026-12-03T12:00Z"))
    assert moved[1:] == (date(2026, 12, 4), {"rule": "FREQ=DAILY;COUNT=2", "from": "due"})
    assert advance("FREQ=DAILY;COUNT=3", date(2026, 12, 1), at("2026-12-03T12:00Z")) is None


def test_until_ends_the_series():
    assert advance("FREQ=DAILY;UNTIL=20261202", date(2026, 12, 1), at("2026-12-01T12:00Z"))[
        1
    ] == date(2026, 12, 2)
    assert advance("FREQ=DAILY;UNTIL=20261202", date(2026, 12, 1), at("2026-12-02T12:00Z")) is None
    timed = "FREQ=DAILY;UNTIL=20261202T080000Z"
    assert advance(timed, at("2026-12-01T08:00Z"), at("2026-12-01T09:00Z"))[0] == at(
        "2026-12-02T08:00Z"
    )
    assert advance(timed, at("2026-12-02T08:00Z"), at("2026-12-02T09:00Z")) is None


@pytest.mark.parametrize(
    "rule, due, message",
    [
        ("FREQ=MINUTELY", at("2026-03-23T08:00Z"), "at most hourly"),
        ("FREQ=SECONDLY", at("2026-03-23T08:00Z"), "at most hourly"),
        ("FREQ=HOURLY;BYMINUTE=0,30", at("2026-03-23T08:00Z"), "more often than hourly"),
        ("FREQ=DAILY;BYSECOND=1,2", at("2026-03-23T08:00Z"), "Not supported here: BYSECOND"),
        ("FREQ=DAILY;INTERVAL=0", at("2026-03-23T08:00Z"), "INTERVAL must be"),
        ("FREQ=DAILY;COUNT=0", at("2026-03-23T08:00Z"), "COUNT must be"),
        ("FREQ=DAILY;COUNT=1001", at("2026-03-23T08:00Z"), "COUNT must be"),
        ("RRULE:FREQ=DAILY", at("2026-03-23T08:00Z"), "RRULE's parts"),
        ("FREQ=DAILY;DTSTART=20260101", at("2026-03-23T08:00Z"), "Not supported here: DTSTART"),
        ("FREQ=DAILY;BYDAY=XX", at("2026-03-23T08:00Z"), "Not a valid rule"),
        ("freq=daily", at("2026-03-23T08:00Z"), "RRULE's parts"),
        ("FREQ=DAILY\nX-INJECTED=1", at("2026-03-23T08:00Z"), "RRULE's parts"),
        ("FREQ=DAILY;UNTIL=20261231", at("2026-03-23T08:00Z"), "UNTIL must be a date"),
        ("FREQ=DAILY;UNTIL=20261231T000000Z", date(2026, 3, 23), "UNTIL must be a date"),
        # rules with no occurrence at all (dateutil would search them until the year 9999)
        ("FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30", at("2026-03-23T08:00Z"), "no occurrence"),
        ("FREQ=HOURLY;BYMONTH=4;BYMONTHDAY=31", at("2026-03-23T08:00Z"), "no occurrence"),
        ("FREQ=MONTHLY;BYDAY=MO;BYSETPOS=6", at("2026-03-23T08:00Z"), "no occurrence"),
        ("FREQ=DAILY;INTERVAL=7;BYDAY=TU", at("2026-03-23T08:00Z"), "no occurrence"),  # Mondays
        ("FREQ=YEARLY;INTERVAL=4;BYMONTH=2;BYMONTHDAY=29", date(2025, 1, 1), "no occurrence"),
        ("FREQ=DAILY", date(1899, 12, 31), "1900 or later"),
        ("FREQ=MONTHLY;BYDAY=53MO", at("2026-03-23T08:00Z"), "Not a valid rule"),
        ("FREQ=DAILY;BYHOUR=99999999999999999999", at("2026-03-23T08:00Z"), "Not a valid rule"),
        ("FREQ=HOURLY;BYSETPOS=3", at("2026-03-23T08:00Z"), "longer FREQ than HOURLY"),
        ("FREQ=DAILY;COUNT=5;UNTIL=20301231T000000Z", at("2026-03-23T08:00Z"), "not both"),
        ("FREQ=DAILY;COUNT=9;COUNT=5", at("2026-03-23T08:00Z"), "at most once"),
        ("FREQ=MONTHLY;BYMONTHDAY=0", at("2026-03-23T08:00Z"), "counts from 1"),
        ("FREQ=WEEKLY;BYDAY=1MO", at("2026-03-23T08:00Z"), "MONTHLY or YEARLY only"),
        ("FREQ=HOURLY", date(2026, 3, 23), "all-day task repeats by days"),
        ("FREQ=DAILY;BYHOUR=9,17", date(2026, 3, 23), "all-day task repeats by days"),
    ],
)
def test_rules_that_cannot_run_are_refused(rule, due, message):
    with pytest.raises(recurrence.RuleError, match=message):
        advance(rule, due, at("2026-03-23T08:00Z"))


# Through HTTP, on both databases.


@pytest.fixture
def alice(client, auth):
    user = auth.signup("alice@example.com")
    assert (
        client.patch("/api/auth/me", json={"time_zone": BERLIN}, headers=user.headers).status_code
        == 200
    )
    return user


WEEKLY = {"rule": "FREQ=WEEKLY;BYDAY=MO", "from": "due"}
MONDAY = "2030-03-25T08:00:00+00:00"  # 09:00 in Berlin; summer time starts on the 31st


def create(client, user, **fields):
    response = client.post(
        user.tasks_url, json={"title": "Team meeting", **fields}, headers=user.headers
    )
    assert response.status_code == 201, response.json
    return response.json


def completions(client, user, task):
    response = client.get(f"{user.tasks_url}/{task['id']}/completions", headers=user.headers)
    assert response.status_code == 200, response.json
    return response.json


@pytest.mark.parametrize(
    "method, suffix, body",
    [
        ("patch", "", {"completed": True}),
        ("patch", "/complete", None),
        (
            "put",
            "",
            {"title": "Team meeting", "due_at": MONDAY, "recurrence": WEEKLY, "completed": True},
        ),
    ],
)
def test_completing_a_weekly_task_moves_it_to_next_monday_at_nine(
    client, alice, method, suffix, body
):
    task = create(client, alice, due_at=MONDAY, recurrence=WEEKLY)
    assert task["recurrence"] == WEEKLY
    url = f"{alice.tasks_url}/{task['id']}{suffix}"
    response = getattr(client, method)(url, json=body, headers=alice.headers)
    assert response.status_code == 200, response.json
    moved = response.json
    assert (moved["completed"], moved["completed_at"]) == (False, None)
    assert (moved["due_at"], moved["recurrence"]) == ("2030-04-01T07:00:00+00:00", WEEKLY)
    assert client.get(url.removesuffix(suffix), headers=alice.headers).json == moved
    [done] = completions(client, alice, task)
    assert (done["due_at"], done["due_date"]) == (MONDAY, None)
    assert datetime.fromisoformat(done["completed_at"]) > datetime.now(UTC) - timedelta(minutes=1)


def test_bulk_complete_moves_recurring_tasks_on_and_completes_the_others(client, alice):
    weekly = create(client, alice, due_at=MONDAY, recurrence=WEEKLY)
    daily = create(client, alice, due_date="2030-01-01", recurrence={"rule": "FREQ=DAILY"})
    plain = create(client, alice, due_date="2030-01-01")
    ids = [weekly["id"], daily["id"], plain["id"]]
    response = client.patch(
        alice.tasks_url, json={"ids": ids, "completed": True}, headers=alice.headers
    )
    assert response.status_code == 200, response.json
    got = {task["id"]: task for task in response.json}
    assert [task["id"] for task in response.json] == sorted(ids)
    assert (got[weekly["id"]]["completed"], got[weekly["id"]]["due_at"]) == (
        False,
        "2030-04-01T07:00:00+00:00",
    )
    assert (got[daily["id"]]["completed"], got[daily["id"]]["due_date"]) == (False, "2030-01-02")
    assert got[daily["id"]]["recurrence"] == {"rule": "FREQ=DAILY", "from": "due"}
    assert (got[plain["id"]]["completed"], got[plain["id"]]["due_date"]) == (True, "2030-01-01")
    assert [len(completions(client, alice, task)) for task in (weekly, daily, plain)] == [1, 1, 1]


def test_a_series_with_count_ends_completed_and_keeps_every_completion(client, alice):
    task = create(client, alice, due_date="2030-01-01", recurrence={"rule": "FREQ=DAILY;COUNT=2"})
    url = f"{alice.tasks_url}/{task['id']}/complete"
    first = client.patch(url, headers=alice.headers).json
    assert (first["completed"], first["due_date"]) == (False, "2030-01-02")
    assert first["recurrence"]["rule"] == "FREQ=DAILY;COUNT=1"
    last = client.patch(url, headers=alice.headers).json
    assert (last["completed"], last["due_date"]) == (True, "2030-01-02")
    assert [done["due_date"] for done in completions(client, alice, task)] == [
        "2030-01-02",
        "2030-01-01",
    ]


def test_from_completion_counts_from_the_day_of_completion(client, alice):
    rule = {"rule": "FREQ=DAILY;INTERVAL=3", "from": "completion"}
    task = create(client, alice, due_date="2030-01-01", recurrence=rule)
    moved = client.patch(f"{alice.tasks_url}/{task['id']}/complete", headers=alice.headers).json
    today = datetime.now(ZoneInfo(BERLIN)).date()
    assert moved["due_date"] in {
        str(today + timedelta(days=3)),
        str(today + timedelta(days=4)),
    }  # midnight


def test_plain_tasks_record_each_completion_too(client, alice):
    task = create(client, alice)
    url = f"{alice.tasks_url}/{task['id']}/complete"
    for _ in range(3):  # completed, reopened, completed
        assert client.patch(url, headers=alice.headers).status_code == 200
    assert (
        client.patch(
            f"{alice.tasks_url}/{task['id']}", json={"completed": True}, headers=alice.headers
        ).status_code
        == 200
    )
    assert (
        len(completions(client, alice, task)) == 2
    )  # completing a completed task is no new completion


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"recurrence": {"rule": "FREQ=DAILY"}}, "needs a due_at or a due_date"),
        ({"due_at": MONDAY, "recurrence": {"rule": "FREQ=MINUTELY"}}, "at most hourly"),
        ({"due_at": MONDAY, "recurrence": {"rule": "FREQ=DAILY;UNTIL=20301231"}}, "UNTIL must be"),
        (
            {"due_at": MONDAY, "recurrence": {"rule": "FREQ=DAILY;UNTIL=20200101T000000Z"}},
            "UNTIL comes before",
        ),
        (
            {"due_at": MONDAY, "recurrence": {"rule": "FREQ=DAILY;BYMONTH=2;BYMONTHDAY=31"}},
            "no occurrence",
        ),
        (
            {"due_at": MONDAY, "recurrence": {"rule": "FREQ=DAILY", "from": "start"}},
            "Must be one of",
        ),
        ({"due_at": MONDAY, "recurrence": "FREQ=DAILY"}, "Invalid input type"),
    ],
)
def test_a_recurrence_that_cannot_run_is_a_422_and_writes_nothing(
    client, alice, app, fields, message
):
    response = client.post(alice.tasks_url, json={"title": "x", **fields}, headers=alice.headers)
    assert response.status_code == 422
    assert message in str(response.json["errors"]["json"]["recurrence"])
    task = create(client, alice)
    response = client.patch(f"{alice.tasks_url}/{task['id']}", json=fields, headers=alice.headers)
    assert response.status_code == 422 and message in str(response.json), response.json
    with app.app_context():
        assert Task.get_by_id(task["id"]).recurrence is None


def test_a_recurring_task_keeps_its_due(client, alice, app):
    task = create(client, alice, due_at=MONDAY, recurrence=WEEKLY)
    url = f"{alice.tasks_url}/{task['id']}"
    response = client.patch(url, json={"due_at": None}, headers=alice.headers)
    assert response.status_code == 422 and "needs a due" in str(response.json)
    assert (
        client.patch(url, json={"due_date": "2030-03-26"}, headers=alice.headers).json["due_at"]
        is None
    )
    cleared = client.patch(url, json={"recurrence": None, "due_date": None}, headers=alice.headers)
    assert (cleared.json["recurrence"], cleared.json["due_date"]) == (None, None)
    assert client.patch(f"{url}/complete", headers=alice.headers).json["completed"] is True


def test_a_patch_may_leave_from_out(client, alice):
    task = create(client, alice, due_at=MONDAY)
    url = f"{alice.tasks_url}/{task['id']}"
    response = client.patch(url, json={"recurrence": {"rule": "FREQ=DAILY"}}, headers=alice.headers)
    assert response.json["recurrence"] == {"rule": "FREQ=DAILY", "from": "due"}


def test_completions_are_the_owners_alone(client, alice, auth):
    task = create(client, alice, due_at=MONDAY, recurrence=WEEKLY)
    client.patch(f"{alice.tasks_url}/{task['id']}/complete", headers=alice.headers)
    mallory = auth.signup("mallory@example.com")
    own_url = f"{mallory.tasks_url}/{task['id']}/completions"
    assert client.get(own_url, headers=mallory.headers).status_code == 404
    their_url = f"{alice.tasks_url}/{task['id']}/completions"
    assert client.get(their_url, headers=mallory.headers).status_code == 403


def test_deleting_a_task_deletes_its_completions(client, alice, app):
    task = create(client, alice, due_at=MONDAY, recurrence=WEEKLY)
    client.patch(f"{alice.tasks_url}/{task['id']}/complete", headers=alice.headers)
    client.delete(f"{alice.tasks_url}/{task['id']}", headers=alice.headers)
    assert (
        client.get(f"{alice.tasks_url}/{task['id']}/completions", headers=alice.headers).status_code
        == 404
    )
    with app.app_context():
        Task.delete().where(Task.id == task["id"]).execute()  # as the purge of tombstones does
        assert Completion.select().count() == 0


def random_rule(rng):
    """A rule from the parts taskapi takes, with values in and out of their ranges."""
    parts = [f"FREQ={rng.choice(['HOURLY', 'DAILY', 'WEEKLY', 'MONTHLY', 'YEARLY'])}"]
    values = {
        "INTERVAL": lambda: str(rng.choice([1, 2, 7, 24, 1000])),
        "COUNT": lambda: str(rng.randint(1, 5)),
        "BYDAY": lambda: ",".join(
            f"{rng.choice(['', '1', '-1', '5', '53', '+2'])}{rng.choice(['MO', 'FR', 'SU'])}"
            for _ in range(rng.randint(1, 3))
        ),
        "BYMONTHDAY": lambda: str(rng.choice([1, 15, 29, 30, 31, -1, -31, 32])),
        "BYMONTH": lambda: str(rng.choice([1, 2, 4, 12, 13])),
        "BYSETPOS": lambda: str(rng.choice([1, -1, 3, 6, 400])),
        "BYHOUR": lambda: str(rng.choice([0, 9, 23, 24, 99999999999999])),
        "BYMINUTE": lambda: str(rng.choice([0, 30, 59, 60])),
        "WKST": lambda: rng.choice(["MO", "SU", "XX"]),
    }
    for name in rng.sample(sorted(values), rng.randint(0, 4)):
        parts.append(f"{name}={values[name]()}")
    return ";".join(parts)


def test_random_rules_run_or_are_refused():
    """Fixed seed: 1,500 rules, on both kinds of due, each advances or is a RuleError (never
    another exception, which would be a 500)."""
    rng = random.Random(2026)
    for _ in range(1500):
        rule = random_rule(rng)
        for due in (at("2030-01-06T08:00Z"), date(2030, 1, 6)):
            try:
                advance(rule, due, at("2030-01-07T12:00Z"), rng.choice(["due", "completion"]))
            except recurrence.RuleError:
                pass
