from taskapi import create_app

from .conftest import SECRET


def test_health_is_ok_without_a_token(client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "database": "ok"}


def test_health_reports_an_unreachable_database():
    app = create_app(
        {"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/gone", "BETTER_AUTH_SECRET": SECRET}
    )
    response = app.test_client().get("/health")
    assert response.status_code == 503
    assert response.json == {"status": "unavailable", "database": "unreachable"}
