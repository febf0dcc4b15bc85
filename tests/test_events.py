"""Task events and reminders as a receiver and a mail server see them: through HTTP on both
databases, then with `python wsgi.py` as deployed, two processes, one of them killed."""

import os
import signal
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests

from taskapi.db import database
from taskapi.models import Outbox, User

from .test_webhooks import add_webhook, deliver


@pytest.fixture
def app(make_app, smtp_server):
    return make_app(WEBHOOK_ALLOW_PRIVATE="true", SMTP_URL=smtp_server.url)


@pytest.fixture
def alice(client, auth, app, receiver):
    user = auth.signup("alice@example.com")
    with app.app_context():
        Outbox.delete().execute()  # the verification mail
        User.update(email_verified=True).where(User.id == user.id).execute()
    add_webhook(client, user, receiver.url)
    return user


def events(app, receiver, count):
    deliver(app)
    return [(event, body["data"]) for _, event, body in receiver.wait_for(count)]


def test_every_task_write_is_an_event(client, alice, app, receiver):
    url = alice.tasks_url
    task = client.post(url, json={"title": "Plan"}, headers=alice.headers).json
    sub = client.post(
        url, json={"title": "Sub", "parent_id": task["id"]}, headers=alice.headers
    ).json
    renamed = client.patch(
        f"{url}/{task['id']}", json={"title": "Plan it"}, headers=alice.headers
    ).json
    done = client.patch(f"{url}/{sub['id']}/complete", headers=alice.headers).json
    reopened = client.patch(
        url, json={"ids": [sub["id"]], "completed": False}, headers=alice.headers
    ).json
    moved = client.post(f"{url}/{sub['id']}/move", json={}, headers=alice.headers).json
    assert client.delete(f"{url}/{task['id']}", headers=alice.headers).status_code == 204
    assert events(app, receiver, 7) == [
        ("task.created", task),
        ("task.created", sub),
        ("task.updated", renamed),
        ("task.completed", done),
        ("task.updated", reopened[0]),
        ("task.updated", moved),
        ("task.deleted", {"id": task["id"]}),
    ]


def test_completing_a_recurring_task_is_a_completed_event(client, alice, app, receiver):
    weekly = {"rule": "FREQ=WEEKLY;BYDAY=MO"}
    body = {"title": "Stand-up", "due_at": "2030-01-07T09:00:00Z", "recurrence": weekly}
    task = client.post(alice.tasks_url, json=body, headers=alice.headers).json
    moved = client.patch(f"{alice.tasks_url}/{task['id']}/complete", headers=alice.headers).json
    cleared = client.post(
        alice.tasks_url, json={"title": "Old", "completed": True}, headers=alice.headers
    )
    assert client.delete(f"{alice.tasks_url}?completed=true", headers=alice.headers).json == {
        "deleted": 1
    }
    assert events(app, receiver, 4)[1:] == [
        ("task.completed", moved),
        ("task.created", cleared.json),
        ("task.deleted", {"id": cleared.json["id"]}),
    ]
    assert (moved["completed"], moved["due_at"]) == (False, "2030-01-14T09:00:00+00:00")


def test_deleting_a_list_deletes_its_tasks_for_webhooks_too(client, alice, app, receiver):
    made = client.post(f"/api/users/{alice.id}/lists", json={"name": "Work"}, headers=alice.headers)
    body = {"title": "Plan", "list_id": made.json["id"]}
    task = client.post(alice.tasks_url, json=body, headers=alice.headers).json
    assert (
        client.delete(
            f"/api/users/{alice.id}/lists/{made.json['id']}", headers=alice.headers
        ).status_code
        == 204
    )
    assert events(app, receiver, 2)[1] == ("task.deleted", {"id": task["id"]})


def test_a_refused_write_tells_nothing(client, alice, app, receiver):
    bad = {"title": "x", "due_at": "2030-01-07T09:00:00Z", "recurrence": {"rule": "FREQ=MINUTELY"}}
    assert client.post(alice.tasks_url, json=bad, headers=alice.headers).status_code == 422
    with app.app_context():
        assert Outbox.select().count() == 0


def test_a_user_without_webhooks_looks_for_none(client, auth, app, caplog):
    bob = auth.signup("bob@example.com")
    task = client.post(bob.tasks_url, json={"title": "x"}, headers=bob.headers).json
    caplog.set_level("DEBUG", logger="peewee")
    client.patch(f"{bob.tasks_url}/{task['id']}", json={"title": "y"}, headers=bob.headers)
    assert not [r for r in caplog.records if "webhooks" in r.getMessage()]


# As deployed: reminders reach a real SMTP server and a real receiver, once each.


def set_up_reminders(server, app, receiver, seconds):
    """A user in Berlin with a verified address, a webhook, and a task with a reminder firing
    in each of `seconds`."""
    signup = {"email": "carol@example.com", "password": "correct horse"}
    tokens = requests.post(f"{server.url}/api/auth/signup", json=signup, timeout=30).json()
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {tokens['access_token']}"
    user_id = tokens["user"]["id"]
    with app.app_context(), database.atomic():
        User.update(email_verified=True).where(User.id == user_id).execute()
    session.patch(f"{server.url}/api/auth/me", json={"time_zone": "Europe/Berlin"}, timeout=30)
    hook = {"url": receiver.url, "events": ["reminder.fired"], "secret": receiver.secret}
    assert session.post(f"{server.url}/api/users/{user_id}/webhooks", json=hook, timeout=30).ok
    now = datetime.now(UTC)
    at = [{"at": (now + timedelta(seconds=s)).isoformat()} for s in seconds]
    body = {
        "title": "Take the medicine",
        "due_at": (now + timedelta(hours=1)).isoformat(),
        "reminders": at,
    }
    task = session.post(f"{server.url}/api/users/{user_id}/tasks", json=body, timeout=30).json()
    return task


def reminder_mails(smtp_server, count):
    """The reminders mailed, once `count` have arrived (the sign-up's verification mail may
    or may not be sent: the address is verified at once here)."""
    deadline = time.monotonic() + 60
    while len(mails := get_reminder_mails(smtp_server)) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    return mails


def get_reminder_mails(smtp_server):
    return [m for m in smtp_server.inbox.messages if m["Subject"].startswith("Reminder: ")]


def test_reminders_arrive_once_each_from_two_processes(start_server, app, receiver, smtp_server):
    server = start_server("--workers=2", WEBHOOK_ALLOW_PRIVATE="true", SMTP_URL=smtp_server.url)
    task = set_up_reminders(server, app, receiver, seconds=[3, 5])
    fired = receiver.wait_for(2, timeout=60)
    assert sorted(body["data"]["reminder_id"] for _, _, body in fired) == sorted(
        r["id"] for r in task["reminders"]
    )
    assert {event for _, event, _ in fired} == {"reminder.fired"}
    for _, _, body in fired:
        assert datetime.fromisoformat(body["created_at"]) - datetime.fromisoformat(
            body["data"]["fires_at"]
        ) < timedelta(seconds=60)
    assert len(reminder_mails(smtp_server, 2)) == 2
    time.sleep(7)  # every process has looked again, more than once
    assert len(receiver.tried) == 2 and len(reminder_mails(smtp_server, 2)) == 2


def test_a_reminder_due_while_the_service_is_down_arrives_after_a_restart(
    start_server,
    app,
    receiver,
    smtp_server,
):
    server = start_server("--workers=2", WEBHOOK_ALLOW_PRIVATE="true", SMTP_URL=smtp_server.url)
    """Killed between two reminders (the first delivered by mail and webhook, its rows
    gone), the second comes due while nothing runs: after a restart it arrives, once, and the
    first is not sent again."""
    server = start_server("--workers=2", WEBHOOK_ALLOW_PRIVATE="true", SMTP_URL=smtp_server.url)
    task = set_up_reminders(server, app, receiver, seconds=[2, 15])
    receiver.wait_for(1, timeout=60)
    assert len(reminder_mails(smtp_server, 1)) == 1
    wait_for_empty_outbox(app)
    os.killpg(server.pid, signal.SIGKILL)  # every process
    server.wait()
    second = datetime.fromisoformat(task["reminders"][1]["fires_at"])
    time.sleep((second - datetime.now(UTC)).total_seconds() + 1)  # due while nothing runs
    assert len(receiver.tried) == 1
    start_server(WEBHOOK_ALLOW_PRIVATE="true", SMTP_URL=smtp_server.url)
    fired = receiver.wait_for(2, timeout=60)
    assert len({body["data"]["reminder_id"] for _, _, body in fired}) == 2
    time.sleep(6)  # every process has looked again
    assert len(receiver.tried) == 2 and len(reminder_mails(smtp_server, 2)) == 2


def wait_for_empty_outbox(app):
    deadline = time.monotonic() + 30
    with app.app_context():
        while Outbox.select().exists():
            assert time.monotonic() < deadline
            time.sleep(0.05)
