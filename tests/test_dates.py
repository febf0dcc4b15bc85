"""Time zones and all-day dates, through HTTP on both databases; end_of_day on its own."""

from datetime import UTC, date, datetime

import pytest

from taskapi.dates import end_of_day
from taskapi.models import Task, User

from .test_accounts import squat
from .test_auth import bearer, mint


@pytest.fixture
def alice(auth):
    return auth.signup("alice@example.com")


def set_time_zone(client, user, name):
    return client.patch("/api/auth/me", json={"time_zone": name}, headers=user.headers)


def titles(client, user, query):
    response = client.get(f"{user.tasks_url}?{query.replace('+', '%2B')}", headers=user.headers)
    assert response.status_code == 200, response.json
    return [task["title"] for task in response.json]


@pytest.mark.parametrize(
    "day, zone, end",
    [
        (date(2026, 12, 1), "UTC", "2026-12-02T00:00:00+00:00"),
        (date(2026, 12, 1), "Europe/Berlin", "2026-12-01T23:00:00+00:00"),
        (date(2026, 3, 28), "Europe/Berlin", "2026-03-28T23:00:00+00:00"),  # ends before DST
        (date(2026, 3, 29), "Europe/Berlin", "2026-03-29T22:00:00+00:00"),  # a 23-hour day
        (date(2026, 10, 25), "Europe/Berlin", "2026-10-25T23:00:00+00:00"),  # a 25-hour day
        (date(2026, 9, 5), "America/Santiago", "2026-09-06T04:00:00+00:00"),  # no midnight next
        (date(9999, 12, 31), "Europe/Berlin", "9999-12-31T23:00:00+00:00"),
        (date(9999, 12, 31), "Etc/GMT+12", "9999-12-31T23:59:59.999999+00:00"),  # past the end
    ],
)
def test_a_day_ends_at_the_next_days_first_moment_there(day, zone, end):
    assert end_of_day(day, zone) == datetime.fromisoformat(end).astimezone(UTC)


def test_a_user_sets_an_iana_time_zone(client, alice):
    assert client.get("/api/auth/me", headers=alice.headers).json["time_zone"] == "UTC"
    answer = set_time_zone(client, alice, "Europe/Berlin")
    assert answer.status_code == 200 and answer.json["time_zone"] == "Europe/Berlin"
    assert client.get("/api/auth/me", headers=alice.headers).json["time_zone"] == "Europe/Berlin"


BAD_ZONES = ["Mars/Olympus", "", "europe/berlin", "../../etc/passwd", "localtime", "posixrules", 5]


@pytest.mark.parametrize("name", BAD_ZONES)
def test_an_unknown_time_zone_is_422(client, alice, name):
    answer = set_time_zone(client, alice, name)
    assert answer.status_code == 422 and answer.json["errors"]["json"]["time_zone"]
    assert client.get("/api/auth/me", headers=alice.headers).json["time_zone"] == "UTC"


def test_an_all_day_task_has_a_day_and_no_instant(auth, alice):
    task = auth.create_task(alice, due_date="2026-12-01")
    assert (task["due_date"], task["due_at"]) == ("2026-12-01", None)


@pytest.mark.parametrize("day", ["0001-01-01", "9999-12-31"])
def test_the_first_and_last_days_are_due_dates_too(client, auth, alice, day):
    set_time_zone(client, alice, "Pacific/Kiritimati")
    auth.create_task(alice, title=day, due_date=day)
    set_time_zone(client, alice, "Etc/GMT+12")
    assert titles(client, alice, "sort=due_at") == [day]


@pytest.mark.parametrize("day", ["2026-02-30", "0000-01-01", "10000-01-01", "2026-12-01T00:00:00"])
def test_a_day_that_is_not_one_is_422(client, alice, day):
    answer = client.post(
        alice.tasks_url, json={"title": "t", "due_date": day}, headers=alice.headers
    )
    assert answer.status_code == 422 and answer.json["errors"]["json"]["due_date"]


def test_both_kinds_of_due_at_once_is_422(client, alice):
    body = {"title": "t", "due_at": "2026-12-01T09:00:00Z", "due_date": "2026-12-01"}
    answer = client.post(alice.tasks_url, json=body, headers=alice.headers)
    assert answer.status_code == 422
    assert answer.json["errors"]["json"]["due_date"] == ["Give due_at or due_date, not both."]


def test_an_all_day_task_is_due_at_the_end_of_its_day_in_the_users_zone(client, auth, alice):
    set_time_zone(client, alice, "Europe/Berlin")
    auth.create_task(alice, title="all day", due_date="2026-12-01")  # due 23:00 UTC
    assert titles(client, alice, "due_before=2026-12-01T23:00:00+00:00") == []
    assert titles(client, alice, "due_before=2026-12-01T23:00:01+00:00") == ["all day"]
    assert titles(client, alice, "due_after=2026-12-01T22:59:59+00:00") == ["all day"]
    assert titles(client, alice, "due_after=2026-12-01T23:00:00+00:00") == []


def test_sort_by_due_orders_both_kinds_together(client, auth, alice):
    set_time_zone(client, alice, "Europe/Berlin")
    auth.create_task(alice, title="later", due_at="2026-12-01T23:30:00Z")
    auth.create_task(alice, title="no due")
    auth.create_task(alice, title="all day", due_date="2026-12-01")
    auth.create_task(alice, title="earlier", due_at="2026-12-01T22:30:00Z")
    assert titles(client, alice, "sort=due_at") == ["earlier", "all day", "later", "no due"]
    assert titles(client, alice, "sort=-due_at") == ["later", "all day", "earlier", "no due"]


def test_a_new_time_zone_moves_all_day_tasks_but_not_their_versions(client, auth, alice):
    set_time_zone(client, alice, "Europe/Berlin")
    task = auth.create_task(alice, title="all day", due_date="2026-12-01")
    assert titles(client, alice, "due_before=2026-12-01T23:30:00+00:00") == ["all day"]
    set_time_zone(client, alice, "America/New_York")  # the day now ends at 05:00 UTC
    assert titles(client, alice, "due_before=2026-12-01T23:30:00+00:00") == []
    assert titles(client, alice, "due_before=2026-12-02T05:00:01+00:00") == ["all day"]
    again = client.get(f"{alice.tasks_url}/{task['id']}", headers=alice.headers).json
    assert again["updated_at"] == task["updated_at"]


def test_setting_one_kind_of_due_clears_the_other(client, auth, alice):
    task = auth.create_task(alice, title="t", due_at="2026-12-01T09:00:00Z")
    url = f"{alice.tasks_url}/{task['id']}"
    all_day = client.patch(url, json={"due_date": "2026-12-03"}, headers=alice.headers).json
    assert (all_day["due_at"], all_day["due_date"]) == (None, "2026-12-03")
    kept = client.patch(url, json={"due_at": None}, headers=alice.headers).json
    assert kept["due_date"] == "2026-12-03"
    assert titles(client, alice, "due_after=2026-12-03T00:00:00+00:00") == ["t"]
    timed = client.patch(url, json={"due_at": "2026-12-05T09:00:00Z"}, headers=alice.headers).json
    assert (timed["due_at"], timed["due_date"]) == ("2026-12-05T09:00:00+00:00", None)
    assert titles(client, alice, "due_after=2026-12-05T08:00:00+00:00") == ["t"]
    cleared = client.put(url, json={"title": "t"}, headers=alice.headers).json
    assert (cleared["due_at"], cleared["due_date"]) == (None, None)
    assert titles(client, alice, "due_after=2000-01-01T00:00:00+00:00") == []


def test_overdue_counts_all_day_tasks_by_the_end_of_their_day(client, auth, alice):
    auth.create_task(alice, title="past day", due_date="2020-01-01")
    auth.create_task(alice, title="past instant", due_at="2020-01-01T00:00:00Z")
    auth.create_task(alice, title="done", due_date="2020-01-01", completed=True)
    auth.create_task(alice, title="future", due_date="2999-01-01")
    auth.create_task(alice, title="no due")
    assert sorted(titles(client, alice, "overdue=true")) == ["past day", "past instant"]
    assert sorted(titles(client, alice, "overdue=false")) == ["done", "future", "no due"]


def check_keys(app):
    """What is stored: every task's due_key is its due_at, or the end of its due_date's day in
    its user's time zone as the user's row says now."""
    with app.app_context():
        zones = {user.id: user.time_zone for user in User.select()}
        for task in Task.select():
            expected = task.due_at
            if task.due_date is not None:
                expected = end_of_day(task.due_date, zones[task.user_id])
            assert task.due_key == expected, (task.title, task.due_key, expected)


def test_an_account_taken_over_keeps_its_time_zone_and_its_tasks_keys(client, app):
    squatter = squat(client, app)
    headers = bearer(squatter["access_token"])
    client.patch("/api/auth/me", json={"time_zone": "Asia/Tokyo"}, headers=headers)
    url = f"/api/users/{squatter['user']['id']}/tasks"
    client.post(url, json={"title": "all day", "due_date": "2026-12-01"}, headers=headers)
    owner = bearer(mint(sub="ba-owner", email="owner@example.com", emailVerified=True))
    assert client.get("/api/auth/me", headers=owner).json["time_zone"] == "Asia/Tokyo"
    check_keys(app)
