"""The database: opened from DATABASE_URL, one pooled connection per request, and init-db."""

import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import psycopg2
from flask import Flask
from flask.cli import AppGroup
from peewee import (
    AutoField,
    BigAutoField,
    BigIntegerField,
    BooleanField,
    Database,
    DatabaseProxy,
    DateField,
    ForeignKeyField,
    IntegerField,
    Node,
    SqliteDatabase,
    Table,
    TextField,
)
from playhouse.db_url import parse
from playhouse.pool import MaxConnectionsExceeded, PooledDatabase, PooledPostgresqlDatabase

from .config import get_postgres_params

SCHEMA = Path(__file__).resolve().parent.parent / "schema.sql"
MIGRATIONS = SCHEMA.parent / "migrations"
POSTGRES_ONLY = "-- PostgreSQL only"
SQLITE_ONLY = "-- SQLite only"
SQLITE_SPELLINGS = {
    # SQLite numbers rows itself only for a column declared exactly INTEGER PRIMARY KEY.
    "BIGINT NOT NULL GENERATED ALWAYS AS IDENTITY PRIMARY KEY": "INTEGER NOT NULL PRIMARY KEY",
    'COLLATE "C"': "COLLATE BINARY",  # byte order: SQLite's default, and its name for it
}
# Fields whose values both drivers already return as Python has them (str, int): a page of tasks
# skips a call per such value (see Prepared.dicts).
AS_RETURNED = (AutoField, BigAutoField, BigIntegerField, IntegerField, TextField)
# and those psycopg2 also returns as Python has them (bool, date); SQLite's are 0, 1 and text.
AS_RETURNED_BY_POSTGRES = (*AS_RETURNED, BooleanField, DateField)
POOL_WAIT_SECONDS = 10
PING_AFTER_IDLE_SECONDS = 1.0

database = DatabaseProxy()
schema_migrations = Table("schema_migrations", ["version", "applied_at"]).bind(database)


class PooledPostgres(PooledPostgresqlDatabase):
    """peewee's pool, with three changes:
    - it keeps at most `pool_size` idle connections (SQLAlchemy's semantics): the
      `max_overflow` extra ones opened under load are closed when handed back;
    - it pings a connection on checkout (a round trip) only if it sat idle for a while: one
      handed back a moment ago is as alive as its last query showed. A database restarted in
      that moment costs a 503 per such connection, which is then dropped;
    - with metrics on (metrics.py), it counts its waits and its failures to connect."""

    metrics: Any = None  # a metrics.Metrics, when METRICS_LISTEN is set

    def __init__(self, *args: Any, pool_size: int, **kwargs: Any) -> None:
        self.pool_size = pool_size
        self.returned_at: dict[int, float] = {}
        super().__init__(*args, **kwargs)

    def connect(self, reuse_if_open: bool = False) -> bool:
        """A free connection at once, or else peewee's wait for one (counted as such)."""
        try:  # the first round of peewee's own loop, which would hide that it had to wait
            return super(PooledDatabase, self).connect(reuse_if_open)
        except MaxConnectionsExceeded:
            if self.metrics is None:
                return super().connect(reuse_if_open)
        self.metrics.connection_waits.inc()
        try:
            return super().connect(reuse_if_open)
        except MaxConnectionsExceeded:
            self.metrics.connection_timeouts.inc()
            raise

    def _connect(self) -> Any:
        try:
            return super()._connect()
        except psycopg2.OperationalError:  # PostgreSQL away, or refusing
            if self.metrics is not None:
                self.metrics.connect_failures.inc()
            raise

    def get_connection_counts(self) -> tuple[int, int]:
        """How many connections are in use, and how many idle, now."""
        with self._pool_lock:
            return len(self._in_use), len(self._connections)

    def _is_closed(self, conn: Any) -> bool:
        idle = time.monotonic() - self.returned_at.get(id(conn), 0.0)
        if idle < PING_AFTER_IDLE_SECONDS and not conn.closed:
            return False
        return super()._is_closed(conn)

    def _close(self, conn: Any, close_conn: bool = False) -> None:
        with self._pool_lock:
            self.returned_at[id(conn)] = time.monotonic()
            super()._close(conn, close_conn or len(self._connections) >= self.pool_size)


class TimedSqlite(SqliteDatabase):
    """SQLite, with PostgreSQL's statement_timeout: SQLite calls is_overdue every
    PROGRESS_STEPS steps of a statement's program, and stops the statement ("interrupted")
    once it has run `statement_timeout` seconds."""

    PROGRESS_STEPS = 10_000  # about a millisecond's work

    def __init__(self, *args: Any, statement_timeout: float, **kwargs: Any) -> None:
        self.statement_timeout = statement_timeout
        super().__init__(*args, **kwargs)

    def _add_conn_hooks(self, conn: sqlite3.Connection) -> None:
        super()._add_conn_hooks(conn)
        conn.set_progress_handler(self.is_overdue, self.PROGRESS_STEPS)

    def execute_sql(self, sql: str, params: Any = None) -> Any:
        self._state.deadline = time.monotonic() + self.statement_timeout
        return super().execute_sql(sql, params)

    def is_overdue(self) -> bool:
        return time.monotonic() > getattr(self._state, "deadline", float("inf"))


class Slot(Node):
    """A named parameter of a Prepared query, given its value on each run."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = SlotName(name)

    def __sql__(self, ctx: Any) -> Any:
        return ctx.value(self.name, converter=False)  # a placeholder, and this name as its param


class SlotName(str):
    pass


class Prepared:
    """A query on the hot path whose SQL is built once per kind of database, not per request:
    peewee takes 0.1 to 0.2 ms to build a simple SELECT, as long as the round trip itself."""

    def __init__(self, query: Any) -> None:
        self.query = query
        self.sql: dict[type, tuple[str, list[Any]]] = {}
        fields = query._returning  # model fields only (Task.select()), in the SQL's order
        self.names = [field.name for field in fields]
        # Per kind of database: (name, python_value) of the fields whose values need a call
        self.converters: dict[type, list[tuple[str, Any]]] = {}
        # Every field reads NULL as None, which needs no call, but lists (which read it as []).
        self.lists = [field.name for field in fields if field.python_value(None) == []]

    def dicts(self, **values: Any) -> list[dict[str, Any]]:
        """The rows as `.dicts()` gives them, each value as its field's python_value makes it,
        without peewee's work per query and per row (resolving the columns, calls per row)."""
        rows, converters = [], self.get_converters()
        for values_in_row in database.execute_sql(*self.get_sql(values)).fetchall():
            row = dict(zip(self.names, values_in_row, strict=True))
            for name, convert in converters:
                if row[name] is not None:
                    row[name] = convert(row[name])
            for name in self.lists:
                if row[name] is None:
                    row[name] = []
            rows.append(row)
        return rows

    def get_converters(self) -> list[tuple[str, Any]]:
        kind = type(database.obj)
        if kind not in self.converters:
            kept = AS_RETURNED if issubclass(kind, SqliteDatabase) else AS_RETURNED_BY_POSTGRES
            fields = self.query._returning
            self.converters[kind] = [
                (field.name, field.python_value)
                for field in fields
                if not is_as_returned(field, kept)
            ]
        return self.converters[kind]

    def get_sql(self, values: dict[str, Any]) -> tuple[str, list[Any]]:
        kind = type(database.obj)
        if kind not in self.sql:
            self.sql[kind] = self.query.sql()
        sql, params = self.sql[kind]
        return sql, [values[param] if isinstance(param, SlotName) else param for param in params]

    def first(self, **values: Any) -> Any:
        """The first row as a model, built as peewee's own cursor builds one; None if none."""
        rows = self.dicts(**values)
        if not rows:
            return None
        model = self.query.model(__no_default__=True, **rows[0])
        model._dirty.clear()  # as read from the database: nothing to save
        return model


def is_as_returned(field: Any, kept: tuple[type, ...]) -> bool:
    """Whether the driver's value is the field's Python value: exactly one of `kept` (a
    subclass may convert, as PriorityField does), or a foreign key to one."""
    target = field.rel_field if type(field) is ForeignKeyField else field
    return type(target) in kept


def open_database(config: dict[str, Any]) -> Database:
    """A peewee database for DATABASE_URL; connections open lazily, on the first query."""
    url = config["DATABASE_URL"]
    if url.startswith("sqlite:"):
        params = parse(url)
        os.makedirs(os.path.dirname(os.path.abspath(params["database"])), exist_ok=True)
        pragmas = {"journal_mode": "wal", "synchronous": "normal", "foreign_keys": 1}
        return TimedSqlite(
            statement_timeout=config["DB_STATEMENT_TIMEOUT"],
            pragmas=pragmas,
            timeout=10,
            # A transaction takes the write lock at BEGIN, waiting up to `timeout` for it. Begun
            # deferred, one that read first could not write once another process had written
            # in between: SQLite says "database is locked" at once, without waiting.
            lock_type="IMMEDIATE",
            returning_clause=True,
            **params,
        )
    # libpq's own reading of the URL (several hosts, any parameter), given to it as keywords
    params = get_postgres_params(url)
    ours = f"-c timezone=UTC -c statement_timeout={config['DB_STATEMENT_TIMEOUT']}s"
    params["options"] = f"{ours} {params.get('options', '')}".strip()  # the URL's own win
    return PooledPostgres(
        params.pop("dbname"),
        pool_size=config["DB_POOL_SIZE"],
        max_connections=config["DB_POOL_SIZE"] + config["DB_MAX_OVERFLOW"],
        timeout=POOL_WAIT_SECONDS,
        **{"connect_timeout": config["DB_CONNECT_TIMEOUT"]} | params,
    )


def close_db(exception: BaseException | None = None) -> None:
    """Hand this thread's connection back to the pool (or close it), errors included."""
    if not database.is_closed():
        database.close()


def run_sql(sql: str) -> None:
    """Run a script of schema.sql's kind in one transaction, on either database: the part
    both share, then its own section ("-- SQLite only" comes before "-- PostgreSQL only")."""
    shared, marker, postgres = sql.partition(POSTGRES_ONLY)
    postgres = marker + postgres  # the marker line stays a comment
    shared, marker, sqlite = shared.partition(SQLITE_ONLY)
    sqlite = marker + sqlite
    with database.atomic():
        if isinstance(database.obj, SqliteDatabase):
            # sqlite3 runs one statement per call; trigger bodies keep theirs whole.
            for statement in split_statements(spell_for_sqlite(shared + sqlite)):
                database.execute_sql(statement)
        else:
            # An index built over a large table may take longer than a request may.
            database.execute_sql("SET LOCAL statement_timeout = 0")
            database.execute_sql(shared + postgres)  # psycopg2 runs a whole script at once


def spell_for_sqlite(sql: str) -> str:
    for postgres, sqlite in SQLITE_SPELLINGS.items():
        sql = sql.replace(postgres, sqlite)
    return sql


def split_statements(sql: str) -> Iterator[str]:
    statement = ""
    for line in sql.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            yield statement
            statement = ""
    if statement.strip():
        yield statement  # unfinished: the database says what is wrong, rather than skip it


def get_migrations() -> list[Path]:
    return sorted(MIGRATIONS.glob("[0-9]*.sql"))


def get_applied_migrations() -> set[str]:
    if "schema_migrations" not in database.get_tables():
        return set()
    return {row["version"] for row in schema_migrations.select(schema_migrations.version)}


def upgrade() -> list[str]:
    """Apply the migrations not yet recorded, in order, each in its own transaction."""
    applied = get_applied_migrations()
    done = []
    for path in get_migrations():
        if path.stem not in applied:
            with database.atomic():
                run_sql(path.read_text())
                record_migrations([path.stem])
            done.append(path.stem)
    return done


def record_migrations(versions: list[str]) -> None:
    if versions:
        schema_migrations.insert([{"version": version} for version in versions]).execute()


def init_db() -> str:
    """A new database gets schema.sql (which every migration is already part of);
    one that has tables is brought up to date by its migrations instead."""
    if "tasks" in database.get_tables():
        done = upgrade()
        return f"applied migrations: {', '.join(done)}" if done else "already up to date"
    with database.atomic():
        run_sql(SCHEMA.read_text())
        record_migrations([path.stem for path in get_migrations()])
    return "created from schema.sql"


def is_postgres() -> bool:
    return isinstance(database.obj, PooledPostgres)


def ping() -> None:
    database.execute_sql("SELECT 1")


@click.command("init-db")
def init_db_command() -> None:
    """Create the tables in the configured database, or bring them up to date."""
    click.echo(f"{database.obj.database}: {init_db()}.")


db_cli = AppGroup("db", help="Database schema commands.")


@db_cli.command("upgrade")
def upgrade_command() -> None:
    """Apply the migrations in migrations/ that this database has not had yet."""
    done = upgrade()
    click.echo(f"Applied: {', '.join(done)}." if done else "Already up to date.")


def init_app(app: Flask) -> None:
    database.initialize(open_database(app.config))
    app.teardown_appcontext(close_db)
    app.cli.add_command(init_db_command)
    app.cli.add_command(db_cli)
