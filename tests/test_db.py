import functools
import sqlite3
import subprocess
import threading
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from urllib.parse import urlsplit

import pytest
from peewee import (
    CompositeKey,
    OperationalError,
    PostgresqlDatabase,
    ProgrammingError,
    SqliteDatabase,
)

from taskapi import create_app, db
from taskapi.db import (
    database,
    get_applied_migrations,
    get_migrations,
    init_db,
    record_migrations,
    run_sql,
    upgrade,
)
from taskapi.models import (
    Completion,
    DeletedUser,
    IdempotencyKey,
    Outbox,
    RateLimit,
    Task,
    TaskList,
    TaskTag,
    User,
    Webhook,
)

from .conftest import SECRET, create_postgres_database

TABLES = [
    "calendar_feeds",
    "reminder_firings",
    "task_completions",
    "task_tags",
    "idempotency_keys",
    "tasks",
    "lists",
    "deleted_users",
    "rate_limits",
    "refresh_tokens",
    "sessions",
    "email_tokens",
    "outbox",
    "webhooks",
    "users",
    "schema_migrations",
]
MODELS = [User, TaskList, Task, Completion, TaskTag, IdempotencyKey, DeletedUser, RateLimit]
MODELS += [Webhook, Outbox]
# information_schema's name for each peewee column type used by the models.
POSTGRES_TYPES = {
    "BIGAUTO": "bigint",
    "BIGINT": "bigint",
    "TEXT": "text",
    "BOOL": "boolean",
    "SMALLINT": "smallint",
    "INT": "integer",
    "TIMESTAMPTZ": "timestamp with time zone",
    "DATE": "date",
    "DOUBLE": "double precision",
}


def column_type(field):
    return getattr(field, "rel_field", field).field_type


def is_primary_key(model, field):
    key = model._meta.primary_key
    return field.name in key.field_names if isinstance(key, CompositeKey) else field.primary_key


def drop_all_tables():
    for table in TABLES:
        database.execute_sql(f"DROP TABLE IF EXISTS {table}")


def test_init_db_creates_the_schema_and_is_safe_twice(app, runner):
    with app.app_context():
        drop_all_tables()
    outputs = [runner.invoke(args=["init-db"]).output for _ in range(2)]
    assert "created from schema.sql" in outputs[0]
    assert "already up to date" in outputs[1]
    with app.app_context():
        assert set(database.get_tables()) == set(TABLES)
        assert get_applied_migrations() == {path.stem for path in get_migrations()}


def test_db_upgrade_brings_a_first_version_database_up_to_date(app, runner):
    with app.app_context():
        drop_all_tables()
        run_sql(get_migrations()[0].read_text())  # the first release had no migration table
        database.execute_sql("DROP TABLE schema_migrations")
        database.execute_sql("INSERT INTO users (id, email) VALUES ('old', 'old@x.io')")
        database.execute_sql(
            "INSERT INTO tasks (user_id, title, completed) VALUES ('old', 'old task', TRUE)"
        )
    result = runner.invoke(args=["db", "upgrade"])
    applied = ", ".join(path.stem for path in get_migrations())
    assert result.output == f"Applied: {applied}.\n"
    assert applied.startswith("0001_baseline, 0002_task_features, 0003_task_count, ")
    assert runner.invoke(args=["db", "upgrade"]).output == "Already up to date.\n"
    with app.app_context():
        task = Task.get(Task.title == "old task")
        assert (task.priority, task.tags, task.deleted_at) == ("none", [], None)
        assert task.completed_at == task.updated_at
        assert User.get_by_id("old").task_count == 1
        Task.update(tags=["kept", "in step"]).where(Task.id == task.id).execute()
        assert {tag.tag for tag in TaskTag.select()} == {"kept", "in step"}


def test_a_failing_migration_leaves_nothing_behind(app, tmp_path, monkeypatch):
    (tmp_path / "0001_fine.sql").write_text("CREATE TABLE fine (id INTEGER);\n")
    (tmp_path / "0002_broken.sql").write_text(
        "CREATE TABLE half (id INTEGER);\nALTER TABLE nowhere ADD COLUMN x INTEGER;\n"
    )
    monkeypatch.setattr(db, "MIGRATIONS", tmp_path)
    with app.app_context():
        drop_all_tables()
        run_sql("CREATE TABLE schema_migrations (version TEXT PRIMARY KEY, applied_at TEXT);")
        with pytest.raises((OperationalError, ProgrammingError)):  # SQLite's, PostgreSQL's
            upgrade()
        assert get_applied_migrations() == {"0001_fine"}
        assert "fine" in database.get_tables()
        assert "half" not in database.get_tables()
        drop_all_tables()
        database.execute_sql("DROP TABLE fine")
    monkeypatch.undo()
    with app.app_context():
        init_db()


@contextmanager
def fresh_app(url):
    app = create_app({"DATABASE_URL": url, "BETTER_AUTH_SECRET": SECRET})
    with app.app_context():
        yield app


def postgres_schema(url):
    bindir = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True).stdout
    dump = subprocess.run(
        [f"{bindir.strip()}/pg_dump", "--schema-only", "--no-owner", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # Comments and pg_dump's \restrict lines (a random key per dump) are not the schema.
    return [line for line in dump.splitlines() if line and not line.startswith(("--", "\\"))]


def test_schema_sql_and_migrations_build_the_same_postgres_schema(database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL's schema")
    dumps = []
    for build in (init_db, upgrade):
        with contextmanager(create_postgres_database)() as url, fresh_app(url):
            build()
            database.close_all()
            dumps.append(postgres_schema(url))
    assert dumps[0] == dumps[1]
    assert any("tasks_user_id_search_idx" in line for line in dumps[0])


def sqlite_schema():
    tables = sorted(database.get_tables())
    columns = {table: [tuple(column) for column in database.get_columns(table)] for table in tables}
    indexes = {table: sorted(map(tuple, database.get_indexes(table))) for table in tables}
    return columns, indexes


def test_schema_sql_and_migrations_build_the_same_sqlite_schema(tmp_path):
    schemas = []
    for build in (init_db, upgrade):
        with fresh_app(f"sqlite:///{tmp_path}/{build.__name__}.db"):
            build()
            schemas.append(sqlite_schema())
    assert schemas[0] == schemas[1]


@contextmanager
def fresh_database(database_url, path):
    """The URL of a new, empty database of the session's kind (SQLite: the file at path)."""
    if database_url.startswith("sqlite"):
        yield f"sqlite:///{path}"
    else:
        yield from create_postgres_database()


def get_schema(url):
    """The schema of the database at `url`, which `database` is bound to."""
    if url.startswith("sqlite"):
        return sqlite_schema()
    return postgres_schema(url)


def test_init_db_brings_an_old_database_up_to_date(database_url, tmp_path):
    """A database of the first release, as init-db left it then, gets the other migrations,
    not schema.sql's CREATE ... IF NOT EXISTS, which would skip the tables it has."""
    first, *later = [path.stem for path in get_migrations()]
    with fresh_database(database_url, tmp_path / "old.db") as url, fresh_app(url) as app:
        run_sql(get_migrations()[0].read_text())
        record_migrations([first])
        output = app.test_cli_runner().invoke(args=["init-db"]).output
        assert f"applied migrations: {', '.join(later)}." in output
        assert get_applied_migrations() == {first, *later}
        upgraded = get_schema(url)
    with fresh_database(database_url, tmp_path / "new.db") as url, fresh_app(url):
        init_db()
        assert get_schema(url) == upgraded


def test_migration_puts_existing_tasks_in_an_inbox_in_creation_order(database_url, tmp_path):
    """A database as 0006 left it, with tasks: every user gets one inbox, and their tasks go
    into it, oldest first, tags and tombstones kept; a new task goes after them."""
    before = [path for path in get_migrations() if path.stem < "0007"]
    with fresh_database(database_url, tmp_path / "old.db") as url, fresh_app(url) as app:
        for path in before:
            run_sql(path.read_text())
        record_migrations([path.stem for path in before])
        for user in ("ann", "ben", "cat"):
            database.execute_sql(f"INSERT INTO users (id, email) VALUES ('{user}', '{user}@x.io')")
        for number, (user, minute, tags, deleted) in enumerate(
            [
                ("ann", 3, '["c"]', None),
                ("ann", 1, "[]", None),
                ("ben", 5, "[]", None),
                ("ann", 2, '["b", "x"]', "2026-01-01T00:00:00+00:00"),
            ]
        ):
            database.execute_sql(
                "INSERT INTO tasks (user_id, title, created_at, tags, deleted_at, due_at) "
                "VALUES (?, ?, ?, ?, ?, ?)".replace("?", "%s" if "postgres" in url else "?"),
                (user, f"task {number}", f"2026-01-01T00:0{minute}:00+00:00", tags, deleted)
                + (datetime(2026, 2, number + 1, tzinfo=UTC),),
            )
        assert "0007_lists_and_order" in app.test_cli_runner().invoke(args=["init-db"]).output
        inboxes = {found.user_id: found for found in TaskList.select().where(TaskList.is_inbox)}
        assert sorted(inboxes) == ["ann", "ben", "cat"] == sorted(u.id for u in User.select())
        assert [inboxes[user].task_count for user in ("ann", "ben", "cat")] == [2, 1, 0]
        anns = Task.select().where(Task.user == "ann").order_by(Task.path)
        assert [task.title for task in anns] == ["task 1", "task 3", "task 0"]
        assert {task.list_id for task in anns} == {inboxes["ann"].id}
        assert [task.path for task in anns] == [f"h0000000{n}." for n in range(3)]
        assert sorted(tag.tag for tag in TaskTag.select()) == ["b", "c", "x"]
        assert all(task.due_key == task.due_at is not None for task in Task.select())  # 0008
        client = app.test_client()
        token = client.post(
            "/api/auth/signup", json={"email": "new@x.io", "password": "p4ss-w0rd-ok"}
        )
        assert TaskList.select().where(TaskList.is_inbox).count() == 4, token.json


@pytest.mark.parametrize("model", MODELS)
def test_models_match_schema_sql(app, model):
    """Every column of schema.sql, as the database reports it, agrees with the model."""
    with app.app_context():
        columns = {column.name: column for column in database.get_columns(model._meta.table_name)}
        is_postgres = isinstance(database.obj, PostgresqlDatabase)
    fields = {field.column_name: field for field in model._meta.sorted_fields}
    assert set(columns) == set(fields)
    for name, field in fields.items():
        column = columns[name]
        assert column.null == field.null, name
        assert column.primary_key == is_primary_key(model, field), name
        if is_postgres:
            assert column.data_type == POSTGRES_TYPES[column_type(field)], name
            has_default = field.default is not None
            assert (column.default is not None) == has_default, name


def test_schema_keeps_emails_unique_whatever_their_case(app):
    with app.app_context():
        User.create(id="1", email="same@x.io")
        with pytest.raises(Exception, match="(?i)unique"):
            with database.atomic():
                User.insert(id="2", email="SAME@x.io").execute()


def test_list_query_is_served_by_the_index(app):
    """With 20 users of 500 tasks each, one user's newest page is an index scan, no sort."""
    with app.app_context():
        if not isinstance(database.obj, PostgresqlDatabase):
            pytest.skip("PostgreSQL's planner only")
        database.execute_sql(
            "INSERT INTO users (id, email) SELECT 'u' || n, 'u' || n || '@x.io' "
            "FROM generate_series(1, 20) AS n"
        )
        database.execute_sql(
            "INSERT INTO tasks (user_id, title, created_at, list_id, position, path) "
            "SELECT lists.user_id, 'task', now() - n * interval '1 minute', lists.id, "
            "'h' || lpad(n::text, 8, '0'), 'h' || lpad(n::text, 8, '0') || '.' "
            "FROM generate_series(1, 10000) AS n "
            "JOIN lists ON lists.user_id = 'u' || (mod(n, 20) + 1) AND lists.is_inbox"
        )
        database.execute_sql("ANALYZE tasks")
        query = (
            Task.select()
            .where(Task.user == "u7")
            .order_by(Task.created_at.desc(), Task.id.desc())
            .limit(100)
        )
        sql, params = query.sql()
        plan = "\n".join(row[0] for row in database.execute_sql(f"EXPLAIN {sql}", params))
    assert "Index Scan using tasks_user_id_created_at_idx" in plan, plan
    assert "Sort" not in plan, plan


def test_sqlite_runs_in_wal_mode_with_foreign_keys(app):
    with app.app_context():
        if not isinstance(database.obj, SqliteDatabase):
            pytest.skip("SQLite only")
        assert database.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert database.execute_sql("PRAGMA foreign_keys").fetchone()[0] == 1


def test_a_sqlite_transaction_that_reads_then_writes_outlasts_another_writer(app, database_url):
    """Another process writes while a transaction is between its read and its write (as the
    delivery workers do all day): both writes are kept, none fails "database is locked"."""
    if not database_url.startswith("sqlite"):
        pytest.skip("SQLite only: PostgreSQL's writers wait for each other's row locks")
    path = urlsplit(database_url).path[1:]

    def write_from_another_process():
        with sqlite3.connect(path, timeout=10) as other:
            other.execute("INSERT INTO rate_limits (key, hits, expires_at) VALUES ('b', 1, 0)")

    with app.app_context():
        with database.atomic():
            RateLimit.select().count()  # read first
            writer = threading.Thread(target=write_from_another_process)
            writer.start()
            time.sleep(0.3)  # the other write is done, or waiting for this transaction
            RateLimit.create(key="a", hits=1, expires_at=0)
        writer.join()
        assert sorted(RateLimit.select(RateLimit.key).tuples()) == [("a",), ("b",)]


def run_in_threads(count, work):
    results = []
    threads = [threading.Thread(target=lambda: results.append(work())) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_concurrent_creates_all_succeed(app, auth):
    alice = auth.signup()

    def create_ten():
        client = app.test_client()
        body = {"title": "concurrent"}
        return [
            client.post(alice.tasks_url, json=body, headers=alice.headers).status_code
            for _ in range(10)
        ]

    statuses = sum(run_in_threads(8, create_ten), [])
    assert statuses == [201] * 80
    with app.app_context():
        assert Task.select().count() == 80


def test_connections_go_back_to_the_pool_after_errors(make_app):
    """With one connection in the pool, a request that kept its connection would
    starve the next one (each runs in a thread of its own, like waitress's workers)."""
    app = make_app(DB_POOL_SIZE="1", DB_MAX_OVERFLOW="0")
    client = app.test_client()
    signup = {"email": "pool@x.io", "password": "correct horse"}
    token = client.post("/api/auth/signup", json=signup).json["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    requests = [
        ("post", "/api/auth/signup", signup, 409),
        ("post", "/api/auth/signin", {**signup, "password": "wrong-one"}, 401),
        ("get", "/api/users/nobody/tasks", None, 403),
        ("get", "/api/auth/me", None, 200),
    ] * 3
    for method, url, body, expected in requests:
        send = functools.partial(getattr(client, method), url, json=body, headers=headers)
        assert [response.status_code for response in run_in_threads(1, send)] == [expected], url


def test_times_survive_a_session_in_another_time_zone(database_url, make_app):
    """As behind PgBouncer, which drops the UTC the app asks for: nothing may shift."""
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL sessions")
    app = make_app(DATABASE_URL=database_url + "?options=-c%20timezone%3DAsia/Kathmandu")
    client = app.test_client()
    signup = client.post("/api/auth/signup", json={"email": "tz@x.io", "password": "correct horse"})
    headers = {"Authorization": f"Bearer {signup.json['access_token']}"}
    url = f"/api/users/{signup.json['user']['id']}/tasks"
    body = {"title": "t", "due_at": "2026-12-24T17:00:00+00:00"}
    task_id = client.post(url, json=body, headers=headers).json["id"]
    task = client.get(f"{url}/{task_id}", headers=headers).json
    assert task["due_at"] == "2026-12-24T17:00:00+00:00"
    assert task["created_at"].endswith("+00:00")
    with app.app_context():
        assert database.execute_sql("SHOW timezone").fetchone()[0] == "Asia/Kathmandu"
        stored = database.execute_sql(
            "SELECT to_char(due_at AT TIME ZONE 'UTC', 'HH24:MI') FROM tasks WHERE id = %s",
            [task_id],
        ).fetchone()[0]
    assert stored == "17:00"


def postgres_only(database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL's URLs")
    return urlsplit(database_url)


def test_a_url_with_several_hosts_reaches_the_one_that_answers(make_app, database_url, client):
    """libpq's multi-host form, as a failover formation gives it: the first host is down (a
    closed port), the second answers; and parameters in the URL (connect_timeout) are libpq's."""
    url = postgres_only(database_url)
    hosts = f"{url.username}@127.0.0.1:1,{url.hostname}:{url.port or 5432}"
    several = f"postgresql://{hosts}{url.path}?connect_timeout=2&target_session_attrs=read-write"
    other = make_app(DATABASE_URL=several).test_client()
    assert other.get("/health").json == {"status": "ok", "database": "ok"}
    assert (
        other.post(
            "/api/auth/signup", json={"email": "h@x.io", "password": "correct horse"}
        ).status_code
        == 201
    )


def test_a_write_that_reaches_a_standby_is_a_503(app, database_url):
    """A standby takes reads and refuses writes (read-only transactions), as a primary just
    demoted does: a 503 to try again, not a 500."""
    url = postgres_only(database_url)
    read_only = url._replace(query="options=-c%20default_transaction_read_only%3Don").geturl()
    settings = {"DATABASE_URL": read_only, "BETTER_AUTH_SECRET": SECRET, "BCRYPT_ROUNDS": "4"}
    client = create_app(settings).test_client()  # on the schema `app` made
    assert client.get("/health").status_code == 200
    body = {"email": "s@x.io", "password": "correct horse"}
    response = client.post("/api/auth/signup", json=body)
    assert (response.status_code, response.json["code"]) == (503, 503)
