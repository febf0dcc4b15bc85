"""Instructions per plain authenticated list (GET /api/users/{id}/tasks, 50 tasks), counted by
callgrind through the Flask test client on a fresh PostgreSQL database:

    PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=out.200 \
        .venv/bin/python bench/callgrind_list.py 200    # then 700; per request is
    (I(700) - I(200)) / 500                             # (the set-up cancels out)

Settings come from the environment as in production (METRICS_LISTEN, say), with test ones for
the rest; BENCH_POSTGRES_URL is a server where this user may create databases."""

import os
import sys
import uuid
from urllib.parse import urlsplit

import psycopg2

from taskapi import create_app
from taskapi.db import database, init_db

ADMIN_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def main(requests):
    name = f"taskapi_callgrind_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(ADMIN_URL)
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    try:
        run(urlsplit(ADMIN_URL)._replace(path=f"/{name}").geturl(), requests)
    finally:
        database.obj.close_all()
        admin.cursor().execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def run(url, requests):
    settings = {"BCRYPT_ROUNDS": "4", "RATELIMIT_ENABLED": "false"}
    app = create_app(
        {**settings, **os.environ, "DATABASE_URL": url, "BETTER_AUTH_SECRET": "x" * 64}
    )
    with app.app_context():
        init_db()
    client = app.test_client()
    body = {"email": "bench@example.com", "password": "correct horse battery"}
    signed_up = client.post("/api/auth/signup", json=body).json
    headers = {"Authorization": f"Bearer {signed_up['access_token']}"}
    url = f"/api/users/{signed_up['user']['id']}/tasks"
    for number in range(50):
        created = client.post(url, json={"title": f"task {number}"}, headers=headers)
        assert created.status_code == 201
    for _ in range(requests):
        response = client.get(url, headers=headers)
        assert response.status_code == 200 and len(response.json) == 50


if __name__ == "__main__":
    main(int(sys.argv[1]))
