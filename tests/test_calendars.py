"""The calendar feed, read back with vobject, an iCalendar parser independent of the library
that writes it: the user's open tasks with a due, their recurrences expanded as a calendar app
expands them, their alarms; the URL is the only key, and revoking it closes the feed."""

from datetime import date, datetime, timedelta
from itertools import islice
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest
import vobject

BERLIN = ZoneInfo("Europe/Berlin")


@pytest.fixture
def alice(client, auth):
    user = auth.signup("alice@example.com")
    client.patch("/api/auth/me", json={"time_zone": "Europe/Berlin"}, headers=user.headers)
    return user


def create(client, user, **fields):
    response = client.post(user.tasks_url, json=fields, headers=user.headers)
    assert response.status_code == 201, response.json
    return response.json


def feed_path(client, user):
    response = client.post("/api/auth/calendar-feed", headers=user.headers)
    assert response.status_code == 201, response.json
    url = urlsplit(response.json["url"])
    assert url.path.startswith("/api/calendar/") and url.path.endswith(".ics")
    return url.path


def read_feed(client, path):
    response = client.get(path)  # no bearer token: calendar apps send none
    assert response.status_code == 200, response.data
    assert response.headers["Content-Type"] == "text/calendar; charset=utf-8"
    return vobject.readOne(response.get_data(as_text=True))


def todos(calendar):
    return {todo.summary.value: todo for todo in calendar.contents.get("vtodo", [])}


def test_the_feed_holds_open_tasks_with_a_due_and_expands_their_rules(client, alice, auth):
    weekly = {"rule": "FREQ=WEEKLY;BYDAY=MO", "from": "due"}
    create(client, alice, title="Team meeting", due_at="2030-03-18T08:00:00Z", recurrence=weekly)
    daily = {"rule": "FREQ=DAILY;COUNT=3"}
    create(client, alice, title="Water the plants", due_date="2030-03-30", recurrence=daily)
    create(client, alice, title="Pay rent", due_date="2030-04-01", priority="high", tags=["home"])
    create(client, alice, title="No due")
    create(client, alice, title="Done", due_date="2030-04-01", completed=True)
    bob = auth.signup("bob@example.com")
    create(client, bob, title="Bob's", due_date="2030-04-01")

    found = todos(read_feed(client, feed_path(client, alice)))
    assert sorted(found) == ["Pay rent", "Team meeting", "Water the plants"]
    # A calendar app reads the wall clock and the zone's name (its own zone data is newer than
    # the VTIMEZONE's, which vobject applies only in part): 09:00 in Berlin each Monday.
    meeting = found["Team meeting"]
    assert meeting.dtstart.serialize().strip() == "DTSTART;TZID=Europe/Berlin:20300318T090000"
    wall = [when.replace(tzinfo=None) for when in islice(meeting.getrruleset(), 3)]
    instants = [when.replace(tzinfo=BERLIN).isoformat() for when in wall]
    assert instants == [
        "2030-03-18T09:00:00+01:00",
        "2030-03-25T09:00:00+01:00",
        "2030-04-01T09:00:00+02:00",  # summer time from 31 March: still 09:00
    ]
    plants = list(found["Water the plants"].getrruleset())
    assert [when.date() for when in plants] == [
        date(2030, 3, 30),
        date(2030, 3, 31),
        date(2030, 4, 1),
    ]
    rent = found["Pay rent"]
    assert (rent.due.value, rent.priority.value, rent.categories.value) == (
        date(2030, 4, 1),
        "1",
        ["home"],
    )
    assert not hasattr(rent, "rrule")


def test_reminders_are_alarms(client, alice):
    reminders = [{"before": 900}, {"at": "2030-03-17T20:00:00Z"}]
    create(client, alice, title="Dentist", due_at="2030-03-18T08:00:00Z", reminders=reminders)
    [before, at] = todos(read_feed(client, feed_path(client, alice)))["Dentist"].valarm_list
    assert (before.trigger.value, before.trigger.params["RELATED"]) == (
        timedelta(minutes=-15),
        ["END"],
    )
    assert at.trigger.value == datetime.fromisoformat("2030-03-17T20:00:00+00:00")
    assert before.action.value == "DISPLAY"


def test_a_new_url_replaces_the_old_and_delete_revokes_it(client, alice, auth):
    first = feed_path(client, alice)
    second = feed_path(client, alice)
    assert client.get(first).status_code == 404
    assert client.get(second).status_code == 200
    assert client.delete("/api/auth/calendar-feed", headers=alice.headers).status_code == 204
    gone = client.get(second)
    assert (gone.status_code, gone.json["code"]) == (404, 404)
    assert client.get("/api/calendar/guessed-token.ics").status_code == 404
    assert client.post("/api/auth/calendar-feed").status_code == 401  # making one needs a token


def test_the_feed_holds_the_zone_for_the_years_of_its_tasks(client, alice):
    create(client, alice, title="Far", due_at="2045-07-03T07:00:00Z")  # 09:00 summer time
    text = client.get(feed_path(client, alice)).get_data(as_text=True).replace("\r\n ", "")
    assert "20450326T030000" in text  # the change to summer time that year, in the VTIMEZONE
    far = todos(vobject.readOne(text))["Far"]
    assert far.due.serialize().strip() == "DUE;TZID=Europe/Berlin:20450703T090000"


@pytest.mark.parametrize("zone", ["Etc/GMT+12", "Etc/GMT-14"])
def test_the_feed_serves_tasks_at_the_ends_of_time(client, alice, zone):
    client.patch("/api/auth/me", json={"time_zone": zone}, headers=alice.headers)
    create(client, alice, title="First", due_at="0001-01-01T05:00:00Z", reminders=[{"before": 60}])
    create(client, alice, title="Last", due_at="9999-12-31T20:00:00Z")
    create(client, alice, title="Last day", due_date="9999-12-31")
    assert sorted(todos(read_feed(client, feed_path(client, alice)))) == [
        "First",
        "Last",
        "Last day",
    ]
