"""Read and check the service's settings from the environment."""

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import click
import psycopg2
from limits import parse_many
from psycopg2.extensions import parse_dsn

HOST = r"[a-z0-9-]+(\.[a-z0-9-]+)*"
# scheme://host[:port], the host a name, an IPv6 address in brackets, or *.domain (one label).
ORIGIN = re.compile(rf"https?://({HOST}|\[[0-9a-f:.]+\]|\*\.[a-z0-9-]+\.{HOST})(:[0-9]{{1,5}})?")
PORTS = range(1, 65536)
# The values libpq takes for the parameters a failover depends on.
LIBPQ_CHOICES = {
    "target_session_attrs": "any read-write read-only primary standby prefer-standby".split(),
    "sslmode": "prefer disable allow require verify-ca verify-full".split(),
}


class ConfigError(click.ClickException):
    """One line per mistake, each naming the variable and how to fix it. A ClickException, so
    `flask --app taskapi init-db` prints it as "Error: ..." rather than a traceback."""


def load_config(environ: Mapping[str, Any], instance_path: str) -> dict[str, Any]:
    """Parse every variable of the contract's table into one dict, or raise ConfigError."""
    errors: list[str] = []

    def read(name: str, default: Any, parse: Callable[[str, Any], Any]) -> Any:
        value = environ.get(name)
        if value is None or value == "":
            return default
        try:
            return parse(name, value)
        except ValueError as error:
            errors.append(f"{name}: {error}")
            return default

    sqlite_default = "sqlite:///" + os.path.join(instance_path, "taskapi.db")
    config = {
        "DATABASE_URL": read("DATABASE_URL", sqlite_default, parse_database_url),
        "BETTER_AUTH_SECRET": read("BETTER_AUTH_SECRET", None, parse_secret),
        "CORS_ORIGINS": read("CORS_ORIGINS", ["http://localhost:3000"], parse_origins),
        "CORS_ALLOW_CREDENTIALS": read("CORS_ALLOW_CREDENTIALS", False, parse_bool),
        "JWT_EXPIRES_IN": read("JWT_EXPIRES_IN", 86400, integer(minimum=60)),
        "REFRESH_EXPIRES_IN": read("REFRESH_EXPIRES_IN", 30 * 86400, integer(minimum=60)),
        "LOCAL_ACCOUNTS": read("LOCAL_ACCOUNTS", True, parse_bool),
        "PASSWORD_MIN_LENGTH": read("PASSWORD_MIN_LENGTH", 8, integer(minimum=8, maximum=64)),
        "SMTP_URL": read("SMTP_URL", None, parse_smtp_url),
        "MAIL_FROM": read("MAIL_FROM", "taskapi <noreply@localhost>", parse_mail_from),
        "PASSWORD_RESET_URL": read(
            "PASSWORD_RESET_URL", "http://localhost:3000/reset-password", parse_page_url
        ),
        "EMAIL_VERIFY_URL": read(
            "EMAIL_VERIFY_URL", "http://localhost:3000/verify-email", parse_page_url
        ),
        "JWT_ISSUER": read("JWT_ISSUER", None, lambda name, value: value),
        "JWT_AUDIENCE": read("JWT_AUDIENCE", None, lambda name, value: value),
        "BETTER_AUTH_JWKS_URL": read("BETTER_AUTH_JWKS_URL", None, parse_jwks_url),
        "BCRYPT_ROUNDS": read("BCRYPT_ROUNDS", 12, integer(minimum=4, maximum=31)),
        "BCRYPT_CONCURRENCY": read("BCRYPT_CONCURRENCY", os.cpu_count() or 1, integer(minimum=1)),
        "DB_POOL_SIZE": read("DB_POOL_SIZE", 5, integer(minimum=1)),
        "DB_MAX_OVERFLOW": read("DB_MAX_OVERFLOW", 10, integer(minimum=0)),
        "DB_CONNECT_TIMEOUT": read("DB_CONNECT_TIMEOUT", 5, integer(minimum=1)),
        "DB_STATEMENT_TIMEOUT": read("DB_STATEMENT_TIMEOUT", 5, integer(minimum=1)),
        "MAX_CONTENT_LENGTH": read("MAX_CONTENT_LENGTH", 65536, integer(minimum=1024)),
        "REQUEST_TIMEOUT": read("REQUEST_TIMEOUT", 10, integer(minimum=1)),
        "CONNECTION_LIMIT": read("CONNECTION_LIMIT", 1000, integer(minimum=10)),
        "CONNECTIONS_PER_ADDRESS": read("CONNECTIONS_PER_ADDRESS", 100, integer(minimum=1)),
        "TOMBSTONE_RETENTION_DAYS": read("TOMBSTONE_RETENTION_DAYS", 30, integer(minimum=1)),
        "RATELIMIT_ENABLED": read("RATELIMIT_ENABLED", True, parse_bool),
        "RATELIMIT_STORAGE_URI": read("RATELIMIT_STORAGE_URI", "database://", parse_storage_uri),
        "AUTH_RATE_LIMIT": read("AUTH_RATE_LIMIT", "20/minute", parse_rate_limit),
        "SIGNIN_EMAIL_RATE_LIMIT": read(
            "SIGNIN_EMAIL_RATE_LIMIT", "10/minute;100/day", parse_rate_limit
        ),
        "SIGNIN_DEVICE_RATE_LIMIT": read("SIGNIN_DEVICE_RATE_LIMIT", "10/minute", parse_rate_limit),
        "WRITE_RATE_LIMIT": read("WRITE_RATE_LIMIT", "300/minute", parse_rate_limit),
        "SEARCH_RATE_LIMIT": read("SEARCH_RATE_LIMIT", "120/minute", parse_rate_limit),
        "TASK_QUOTA": read("TASK_QUOTA", 10_000, integer(minimum=1)),
        "LIST_QUOTA": read("LIST_QUOTA", 1_000, integer(minimum=1)),
        "TRUSTED_PROXIES": read("TRUSTED_PROXIES", 0, parse_proxies),
        # Webhooks to loopback, private and other internal addresses: for tests and closed
        # networks only (see webhooks.py).
        "WEBHOOK_ALLOW_PRIVATE": read("WEBHOOK_ALLOW_PRIVATE", False, parse_bool),
        # /metrics on an address of its own, never the public port (see metrics.py).
        "METRICS_LISTEN": read("METRICS_LISTEN", None, parse_listen),
    }
    if not environ.get("BETTER_AUTH_SECRET"):
        errors.append(
            "BETTER_AUTH_SECRET: missing; set it to the frontend's secret (32+ characters), "
            "or run `make run` once to generate one into .env"
        )
    if errors:
        raise ConfigError("\n".join(errors))
    return config


def integer(minimum: int, maximum: int | None = None) -> Callable[[str, Any], int]:
    def parse(name: str, value: Any) -> int:
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ValueError(f"{value!r} is not a whole number") from None
        if number < minimum or (maximum is not None and number > maximum):
            bounds = f"between {minimum} and {maximum}" if maximum else f"at least {minimum}"
            raise ValueError(f"{number} is out of range; use a number {bounds}")
        return number

    return parse


def parse_bool(name: str, value: Any) -> bool:
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"{value!r} is not a boolean; use true or false")


def parse_secret(name: str, value: str) -> str:
    if len(value) < 32:
        raise ValueError(
            f"too short ({len(value)} characters); use at least 32, e.g. the output of "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
        )
    return value


def parse_origins(name: str, value: str) -> list[str]:
    origins = [origin.strip().rstrip("/").lower() for origin in value.split(",") if origin.strip()]
    for origin in origins:
        if not ORIGIN.fullmatch(origin):
            raise ValueError(
                f"{origin!r} is not an origin like https://app.example.com "
                "(or https://*.example.com for its subdomains)"
            )
    return origins


def parse_database_url(name: str, value: str) -> str:
    """sqlite:///path, or a PostgreSQL URL in any form libpq takes: several hosts
    (h1:5432,h2:5432, for a failover), parameters (target_session_attrs, connect_timeout,
    sslmode, options...). libpq reads it, so it is checked here as libpq will read it."""
    parts = urlsplit(value)
    if parts.scheme == "sqlite" and parts.path.strip("/"):
        return value
    if parts.scheme in {"postgresql", "postgres"}:
        check_postgres_params(get_postgres_params(value))
        return value
    raise ValueError(
        f"cannot use {value!r}; expected postgresql://user:password@host:5432/dbname "
        "or sqlite:///path/to/file.db"
    )


def check_postgres_params(params: dict[str, str]) -> None:
    """What libpq checks only as it connects: a mistake here stops the start-up, rather than
    answering 503 to every request."""
    if not params.get("dbname"):
        raise ValueError("no database name: postgresql://user:password@host:5432/dbname")
    hosts = (params.get("hostaddr") or params.get("host") or "").split(",")
    ports = params.get("port", "").split(",")  # "": libpq's default, 5432
    if not all(re.fullmatch("[0-9]{0,5}", port) and int(port or 5432) in PORTS for port in ports):
        raise ValueError("bad port: each host's port is a number (h1:5432,h2:5432)")
    if len(ports) not in (1, len(hosts)):
        raise ValueError(f"{len(ports)} ports for {len(hosts)} hosts: one each, or one for all")
    if not re.fullmatch(r"\s*[-+]?[0-9]+\s*", params.get("connect_timeout", "0")):
        raise ValueError("connect_timeout is a number of seconds")
    for key, choices in LIBPQ_CHOICES.items():
        if params.get(key, choices[0]) not in choices:
            raise ValueError(f"{key} {params[key]!r} is not one of {', '.join(choices)}")


def get_postgres_params(url: str) -> dict[str, str]:
    """The connection parameters libpq reads in a PostgreSQL URL."""
    try:
        return parse_dsn(url)
    except psycopg2.ProgrammingError as error:  # its text says what, never the password
        raise ValueError(str(error).strip().splitlines()[0]) from None


def parse_jwks_url(name: str, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError(
            f"{value!r} is not a URL like https://app.example.com/api/auth/jwks "
            "(the frontend's Better Auth JWKS endpoint)"
        )
    return value


def parse_smtp_url(name: str, value: str) -> str:
    parts = urlsplit(value)
    try:
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in {"smtp", "smtps"} or not parts.hostname:
        raise ValueError(  # without the value: it may hold a password
            "not a mail server like smtp://localhost:25 "
            "or smtps://user:password@mail.example.com:465"
        )
    return value


def parse_mail_from(name: str, value: str) -> str:
    if "@" not in value or "\n" in value or "\r" in value:
        raise ValueError(f"{value!r} is not a sender like 'taskapi <noreply@example.com>'")
    return value


def parse_page_url(name: str, value: str) -> str:
    parts = urlsplit(value)
    valid = parts.scheme in {"http", "https"} and parts.hostname and not parts.query
    if not valid or not value.isascii():
        raise ValueError(
            f"{value!r} is not an ASCII page like https://app.example.com/reset-password "
            "(the link in the email adds ?token=...)"
        )
    return value


def parse_rate_limit(name: str, value: str) -> str:
    try:
        parse_many(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a rate limit like 10/minute or 100/hour") from None
    return value


def parse_storage_uri(name: str, value: str) -> str:
    if urlsplit(value).scheme not in {"database", "memory", "redis", "rediss", "redis+unix"}:
        raise ValueError(f"{value!r} is not database://, memory:// or redis://host:6379")
    return value


def parse_listen(name: str, value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host.strip("[]") or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r} is not HOST:PORT, like 127.0.0.1:9464")
    return host.strip("[]"), int(port)


def parse_proxies(
    name: str, value: str
) -> int | frozenset[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """How many proxies in front to trust (a count), or the addresses (or networks, such as
    10.0.0.0/8) of the trusted ones."""
    if value.strip().isdigit():
        return int(value)
    addresses = [address.strip() for address in value.split(",") if address.strip()]
    try:
        return frozenset(ipaddress.ip_network(address) for address in addresses)
    except ValueError:
        raise ValueError(
            f"{value!r} is neither a count nor a list of IP addresses or networks"
        ) from None
