"""The delivery mechanism itself: rounds, handlers, attempts per kind. Mail and webhooks, with
real receivers and real server processes, are in test_mail.py and test_webhooks.py."""

import logging

import pytest

from taskapi import delivery
from taskapi.models import Outbox


@pytest.fixture
def notes(monkeypatch):
    """A kind "note" whose handler records each payload, failing while `failures` lasts."""
    notes = {"sent": [], "failures": 0}

    def send(payload):
        if notes["failures"]:
            notes["failures"] -= 1
            raise delivery.Failed("the receiver is away")
        notes["sent"].append(payload)

    monkeypatch.setitem(delivery.HANDLERS, "note", delivery.Handler(send, attempts=3))
    monkeypatch.setattr(delivery, "ROUND_FUNCTIONS", [])
    return notes


def make_due(app):
    with app.app_context():
        Outbox.update(send_after=0).execute()


def run_round(app):
    with app.app_context():
        return delivery.run_round()


def test_a_round_runs_its_functions_first_and_delivers_what_they_queue(app, notes):
    @delivery.every_round
    def queue_due():
        delivery.queue("note", text="due now")

    assert run_round(app) == 1
    assert notes["sent"] == [{"text": "due now"}]
    assert delivery.ROUND_FUNCTIONS == [queue_due]


def test_a_failing_round_function_stops_no_delivery(app, notes, caplog):
    delivery.every_round(lambda: 1 / 0)
    with app.app_context():
        delivery.queue("note", text="still sent")
    with caplog.at_level(logging.ERROR, logger="taskapi.delivery"):
        assert run_round(app) == 1
    assert "failed; it goes on at the next round" in caplog.text


def test_a_kind_is_tried_as_often_as_its_handler_says(app, notes, caplog):
    notes["failures"] = 5
    with app.app_context():
        delivery.queue("note", text="never")
    for _ in range(4):
        run_round(app)
        make_due(app)
    with app.app_context():
        assert Outbox.select().count() == 0
    assert notes == {"sent": [], "failures": 2}  # 3 attempts, then it was given up
    assert "giving up after 3 attempts: the receiver is away" in caplog.text


def test_a_row_of_an_unknown_kind_waits_rather_than_go(app, notes):
    """Written by a newer version of the service during a rolling deploy, say."""
    with app.app_context():
        delivery.queue("from.the.future", text="kept")
    assert run_round(app) == 0
    with app.app_context():
        [row] = Outbox.select()
    assert row.attempts == 1 and row.kind == "from.the.future"
