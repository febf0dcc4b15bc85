import json
import logging

import pytest

from taskapi import create_app
from taskapi.models import Task, User

from .conftest import SECRET


def assert_error_shape(response, code):
    assert response.status_code == code
    assert response.mimetype == "application/json"
    body = response.json
    assert body["code"] == code
    assert body["status"]
    assert body["message"] and body["detail"] == body["message"]
    assert "Traceback" not in response.get_data(as_text=True)


def test_unknown_route_is_json_404(client):
    assert_error_shape(client.get("/api/nothing/here"), 404)


def test_unknown_route_without_token_is_404_not_401(client):
    assert_error_shape(client.get("/api/users/x/tasks/1/extra"), 404)


def test_wrong_method_is_json_405_with_allow_header(client):
    response = client.delete("/health")
    assert_error_shape(response, 405)
    assert "GET" in response.headers["Allow"]


def test_body_over_the_limit_is_413_and_stores_nothing(client, app):
    body = {"email": "big@x.io", "password": "correct horse", "name": "n" * 70_000}
    assert_error_shape(client.post("/api/auth/signup", json=body), 413)
    with app.app_context():
        assert User.select().count() == 0


def test_body_limit_is_configurable(make_app):
    client = make_app(MAX_CONTENT_LENGTH="2048").test_client()
    body = {"email": "a@x.io", "password": "correct horse", "name": "n" * 2100}
    assert_error_shape(client.post("/api/auth/signup", json=body), 413)


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", None]
)
def test_body_that_is_not_json_is_415(client, auth, app, content_type):
    alice = auth.signup()
    headers = {**alice.headers, **({"Content-Type": content_type} if content_type else {})}
    response = client.post(alice.tasks_url, data='{"title": "x"}', headers=headers)
    assert_error_shape(response, 415)
    with app.app_context():
        assert Task.select().count() == 0


@pytest.mark.parametrize(
    "data",
    [b'{"title": "x"', b"[1, 2]", b'"title"', b"42", b"null", b"\xff\xfe{}", b"[" * 50_000],
)
def test_body_that_is_not_a_json_object_is_400(client, auth, app, data):
    alice = auth.signup()
    headers = {**alice.headers, "Content-Type": "application/json"}
    assert_error_shape(client.post(alice.tasks_url, data=data, headers=headers), 400)
    with app.app_context():
        assert Task.select().count() == 0


def test_empty_json_body_is_422_missing_fields(client, auth):
    alice = auth.signup()
    headers = {**alice.headers, "Content-Type": "application/json"}
    response = client.post(alice.tasks_url, data=b"", headers=headers)
    assert_error_shape(response, 422)
    assert response.json["errors"]["json"]["title"] == ["Missing data for required field."]


def test_unhandled_error_is_json_500_and_logged(make_app, auth, caplog):
    app = make_app()

    def crash():
        raise RuntimeError("secret internals")

    app.add_url_rule("/api/crash", "crash", crash)
    app.testing = False
    alice = type(auth)(app.test_client()).signup()
    with caplog.at_level(logging.ERROR):
        response = app.test_client().get("/api/crash", headers=alice.headers)
    assert_error_shape(response, 500)
    assert "secret internals" not in response.get_data(as_text=True)
    assert "RuntimeError: secret internals" in caplog.text


def test_database_unreachable_is_503():
    app = create_app(
        {"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/gone", "BETTER_AUTH_SECRET": SECRET}
    )
    client = app.test_client()
    body = {"email": "a@x.io", "password": "correct horse"}
    response = client.post("/api/auth/signin", json=body)
    assert_error_shape(response, 503)
    assert response.json["message"] == "The database is unavailable; try again shortly."
    assert response.headers["Retry-After"] == "1"
    assert json.dumps(response.json).count("127.0.0.1") == 0


def test_an_error_quoting_a_lone_surrogate_is_still_json(client, auth):
    """orjson refuses unpaired surrogates; an error naming such an unknown field must still be
    a 422 (written by the standard library instead), not a 500."""
    alice = auth.signup()
    body = '{"title": "ok", "\\ud800": 1}'
    response = client.post(
        alice.tasks_url, data=body, content_type="application/json", headers=alice.headers
    )
    assert_error_shape(response, 422)
    assert response.json["errors"]["json"]["\ud800"] == ["Unknown field."]
    assert b"\\ud800" in response.data


def test_responses_are_compact_utf8_json(client, auth):
    alice = auth.signup()
    body = {"title": "ünïcode ✓ 任务"}
    response = client.post(alice.tasks_url, json=body, headers=alice.headers)
    assert response.status_code == 201
    assert response.json["title"] == "ünïcode ✓ 任务"
    assert "ünïcode ✓ 任务".encode() in response.data
    assert b'{"id":' in response.data  # no spaces, fields in the schema's order
