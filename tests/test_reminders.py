"""Reminders through HTTP on both databases: what a task shows, what follows its due, the
window clients read, and firings queued once, as mail that reaches a real SMTP server."""

import time
from datetime import UTC, datetime, timedelta

import pytest

from taskapi import delivery, reminders
from taskapi.models import Outbox, ReminderFiring, User

DUE = "2030-03-25T08:00:00+00:00"


@pytest.fixture
def app(make_app, smtp_server):
    return make_app(SMTP_URL=smtp_server.url)


@pytest.fixture
def alice(client, auth, app):
    user = auth.signup("alice@example.com")
    with app.app_context():
        User.update(email_verified=True).where(User.id == user.id).execute()
    with app.app_context():  # the verification mail of the signup, out of the way
        Outbox.delete().execute()
    return user


def create(client, user, **fields):
    response = client.post(
        user.tasks_url, json={"title": "Dentist", **fields}, headers=user.headers
    )
    assert response.status_code == 201, response.json
    return response.json


def firings(app):
    with app.app_context():
        return sorted((row.task_id, row.fires_at.isoformat()) for row in ReminderFiring.select())


def test_a_task_shows_its_reminders_with_ids_and_when_they_fire(client, alice, app):
    task = create(
        client, alice, due_at=DUE, reminders=[{"before": 3600}, {"at": "2030-03-24T18:00:00+01:00"}]
    )
    before, at = task["reminders"]
    assert (before["before"], before["fires_at"]) == (3600, "2030-03-25T07:00:00+00:00")
    assert (at["at"], at["fires_at"]) == ("2030-03-24T17:00:00+00:00", "2030-03-24T17:00:00+00:00")
    assert before["id"] != at["id"] and all(0 < r["id"] < 2**53 for r in task["reminders"])
    assert client.get(f"{alice.tasks_url}/{task['id']}", headers=alice.headers).json == task
    assert client.get(alice.tasks_url, headers=alice.headers).json == [task]
    assert firings(app) == [
        (task["id"], "2030-03-24T17:00:00+00:00"),
        (task["id"], "2030-03-25T07:00:00+00:00"),
    ]


def test_before_reminders_follow_the_due_and_at_reminders_stay(client, alice, app):
    task = create(
        client, alice, due_at=DUE, reminders=[{"before": 600}, {"at": "2030-03-20T09:00:00Z"}]
    )
    url = f"{alice.tasks_url}/{task['id']}"
    moved = client.patch(url, json={"due_date": "2030-04-01"}, headers=alice.headers).json
    assert [r["fires_at"] for r in moved["reminders"]] == [
        "2030-04-01T23:50:00+00:00",
        "2030-03-20T09:00:00+00:00",
    ]
    assert [r["id"] for r in moved["reminders"]] == [r["id"] for r in task["reminders"]]
    assert firings(app) == sorted(
        [(task["id"], "2030-04-01T23:50:00+00:00"), (task["id"], "2030-03-20T09:00:00+00:00")]
    )
    refused = client.patch(url, json={"due_date": None}, headers=alice.headers)
    assert refused.status_code == 422 and "needs a due" in str(
        refused.json["errors"]["json"]["reminders"]
    )
    kept = client.patch(
        url, json={"reminders": [moved["reminders"][1]]}, headers=alice.headers
    ).json
    assert kept["reminders"] == [moved["reminders"][1]]
    assert firings(app) == [(task["id"], "2030-03-20T09:00:00+00:00")]
    cleared = client.patch(
        url, json={"reminders": [], "due_date": None}, headers=alice.headers
    ).json
    assert (cleared["reminders"], cleared["due_date"], firings(app)) == ([], None, [])


def test_a_recurring_tasks_reminders_move_on_with_it(client, alice):
    weekly = {"rule": "FREQ=WEEKLY;BYDAY=MO"}
    task = create(
        client,
        alice,
        due_at=DUE,
        recurrence=weekly,
        reminders=[{"before": 900}, {"at": "2030-03-24T20:00:00Z"}],
    )
    moved = client.patch(f"{alice.tasks_url}/{task['id']}/complete", headers=alice.headers).json
    assert moved["due_at"] == "2030-04-01T08:00:00+00:00"
    assert [r["fires_at"] for r in moved["reminders"]] == [
        "2030-04-01T07:45:00+00:00",
        "2030-03-31T20:00:00+00:00",
    ]


def test_a_new_time_zone_moves_all_day_reminders(client, alice):
    task = create(client, alice, due_date="2030-01-10", reminders=[{"before": 3600}])
    assert task["reminders"][0]["fires_at"] == "2030-01-10T23:00:00+00:00"  # UTC
    client.patch("/api/auth/me", json={"time_zone": "Asia/Tokyo"}, headers=alice.headers)
    got = client.get(f"{alice.tasks_url}/{task['id']}", headers=alice.headers).json
    assert got["reminders"][0]["fires_at"] == "2030-01-10T14:00:00+00:00"
    assert got["updated_at"] > task["updated_at"]


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"reminders": [{"before": 60}]}, "needs a due"),
        ({"reminders": [{"at": DUE}] * 6}, "Longer than maximum length 5"),
        ({"reminders": [{"at": DUE, "before": 60}]}, "at or before"),
        ({"reminders": [{}]}, "at or before"),
        ({"reminders": [{"before": -1}]}, "greater than or equal to 0"),
        ({"reminders": [{"before": "60"}]}, "Not a valid integer"),
        ({"reminders": [{"at": "tomorrow"}]}, "Not a valid datetime"),
        ({"due_at": "0001-01-01T00:10:00Z", "reminders": [{"before": 3600}]}, "years 1 to 9999"),
    ],
)
def test_reminders_that_cannot_be_set_are_a_422(client, alice, app, fields, message):
    response = client.post(alice.tasks_url, json={"title": "x", **fields}, headers=alice.headers)
    assert response.status_code == 422 and message in str(response.json), response.json
    assert firings(app) == []


def test_the_window_lists_open_tasks_firings_soonest_first(client, alice, auth):
    first = create(
        client, alice, due_at=DUE, reminders=[{"before": 60}, {"at": "2030-03-01T00:00:00Z"}]
    )
    create(client, alice, title="done", due_at=DUE, completed=True, reminders=[{"before": 60}])
    create(client, alice, title="later", reminders=[{"at": "2031-01-01T00:00:00Z"}])
    bob = auth.signup("bob@example.com")
    create(client, bob, title="Bob's", reminders=[{"at": "2030-03-01T00:00:00Z"}])
    query = "from=2030-01-01T00:00:00Z&to=2030-12-31T00:00:00Z"
    for base in (f"/api/users/{alice.id}", f"/api/{alice.id}"):
        response = client.get(f"{base}/reminders?{query}", headers=alice.headers)
        assert response.status_code == 200, response.json
        assert [(f["task_id"], f["fires_at"]) for f in response.json] == [
            (first["id"], "2030-03-01T00:00:00+00:00"),
            (first["id"], "2030-03-25T07:59:00+00:00"),
        ]
        assert response.json[0] | {"reminder_id": 0} == {
            "task_id": first["id"],
            "reminder_id": 0,
            "fires_at": "2030-03-01T00:00:00+00:00",
            "title": "Dentist",
            "due_at": DUE,
            "due_date": None,
        }
    backwards = client.get(
        f"/api/users/{alice.id}/reminders?from=2030-02-01T00:00:00Z&to=2030-01-01T00:00:00Z",
        headers=alice.headers,
    )
    assert backwards.status_code == 422
    assert (
        client.get(f"/api/users/{alice.id}/reminders?{query}", headers=bob.headers).status_code
        == 403
    )


def fire(app):
    with app.app_context():
        return reminders.fire_due(), delivery.send_pending()


def test_a_firing_is_mailed_once_when_it_comes(client, alice, app, smtp_server):
    soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    task = create(client, alice, title="Call the dentist, ünïcode", reminders=[{"at": soon}])
    assert fire(app) == (0, 0)  # not yet
    time.sleep(1.1)
    assert fire(app) == (1, 1)
    assert fire(app) == (0, 0)
    [message] = smtp_server.inbox.wait_for(1)
    assert (message["To"], message["Subject"]) == (
        "alice@example.com",
        "Reminder: Call the dentist, ünïcode",
    )
    assert "Call the dentist" in message.get_content()
    assert message["Message-ID"].endswith("@taskapi>")  # the same on every try of it
    assert (
        firings(app) == []
        and task["reminders"][0]["fires_at"] == datetime.fromisoformat(soon).isoformat()
    )


def test_a_reminder_mail_shows_the_due_on_the_users_clock(client, alice, app, smtp_server):
    client.patch("/api/auth/me", json={"time_zone": "Europe/Berlin"}, headers=alice.headers)
    soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    create(client, alice, due_at="2030-07-01T07:00:00Z", reminders=[{"at": soon}])
    time.sleep(1.1)
    fire(app)
    [message] = smtp_server.inbox.wait_for(1)
    assert "Due: 2030-07-01 09:00 (Europe/Berlin)" in message.get_content()


def test_completed_and_deleted_tasks_remind_of_nothing(client, alice, app, smtp_server):
    soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    done = create(client, alice, reminders=[{"at": soon}])
    gone = create(client, alice, reminders=[{"at": soon}])
    client.patch(f"{alice.tasks_url}/{done['id']}/complete", headers=alice.headers)
    client.delete(f"{alice.tasks_url}/{gone['id']}", headers=alice.headers)
    time.sleep(1.1)
    assert fire(app) == (2, 0)
    assert smtp_server.inbox.messages == []


def test_an_unverified_address_gets_no_reminder(client, auth, app, smtp_server):
    bob = auth.signup("bob@example.com")
    with app.app_context():
        Outbox.delete().execute()
    soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    create(client, bob, reminders=[{"at": soon}])
    time.sleep(1.1)
    assert fire(app) == (1, 1)  # delivered: as nothing
    assert smtp_server.inbox.messages == []


def test_a_reminder_already_past_when_set_does_not_fire(client, alice, app):
    create(client, alice, reminders=[{"at": "2020-01-01T00:00:00Z"}])
    assert firings(app) == []


def test_reminder_ids_are_the_servers(client, alice, app, smtp_server):
    """Ids a client makes up, or sends twice, are replaced: a firing is its own reminder's."""
    soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    sent = [{"id": 7, "at": soon}, {"id": 7, "at": later}]
    task = create(client, alice, due_at=DUE, reminders=sent)
    ids = [reminder["id"] for reminder in task["reminders"]]
    assert len(set(ids)) == 2 and 7 not in ids
    kept = client.patch(
        f"{alice.tasks_url}/{task['id']}",
        json={"reminders": [task["reminders"][1], {"id": ids[1], "before": 60}]},
        headers=alice.headers,
    ).json["reminders"]
    assert kept[0]["id"] == ids[1] and kept[1]["id"] not in ids
    assert (
        client.patch(
            alice.tasks_url + f"/{task['id']}",
            json={"reminders": [{"id": 1.5, "before": 1}]},
            headers=alice.headers,
        ).status_code
        == 422
    )


def test_a_duplicate_firing_delivers_nothing_early(client, alice, app, smtp_server):
    soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    task = create(client, alice, reminders=[{"at": soon}])
    with app.app_context():  # a firing left from an earlier time of the same reminder
        ReminderFiring.create(
            task=task["id"],
            reminder_id=task["reminders"][0]["id"],
            fires_at=datetime(2020, 1, 1, tzinfo=UTC),
        )
    assert fire(app) == (1, 0)
    time.sleep(1.1)
    assert fire(app) == (1, 1)


def test_a_new_time_zone_with_tasks_at_the_ends_of_time(client, alice):
    for day in ("9999-12-31", "9999-12-30", "0001-01-01"):
        create(client, alice, due_date=day, reminders=[{"before": 0}, {"before": 86400}])
    for zone in ("Pacific/Kiritimati", "Etc/GMT-14", "Etc/GMT+12", "UTC"):
        response = client.patch("/api/auth/me", json={"time_zone": zone}, headers=alice.headers)
        assert response.status_code == 200, response.json


def test_a_recurring_task_with_a_reminder_at_the_end_of_time_moves_on(client, alice):
    weekly = {"rule": "FREQ=WEEKLY"}
    task = create(
        client, alice, due_at=DUE, recurrence=weekly, reminders=[{"at": "9999-12-31T23:00:00Z"}]
    )
    moved = client.patch(f"{alice.tasks_url}/{task['id']}/complete", headers=alice.headers)
    assert (
        moved.status_code == 200 and moved.json["reminders"][0]["at"] == "9999-12-31T23:00:00+00:00"
    )
