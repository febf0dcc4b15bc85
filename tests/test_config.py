import subprocess
import sys
from pathlib import Path

import pytest

from taskapi import create_app
from taskapi.config import ConfigError, load_config

SECRET = "s" * 32
ROOT = str(Path(__file__).resolve().parent.parent)


def test_defaults(tmp_path):
    config = load_config({"BETTER_AUTH_SECRET": SECRET}, str(tmp_path))
    assert config["DATABASE_URL"] == f"sqlite:///{tmp_path}/taskapi.db"
    assert config["CORS_ORIGINS"] == ["http://localhost:3000"]
    assert config["CORS_ALLOW_CREDENTIALS"] is False
    assert config["JWT_EXPIRES_IN"] == 86400
    assert config["BCRYPT_ROUNDS"] == 12
    assert (config["DB_POOL_SIZE"], config["DB_MAX_OVERFLOW"]) == (5, 10)
    assert config["DB_CONNECT_TIMEOUT"] == 5
    assert config["MAX_CONTENT_LENGTH"] == 65536
    assert config["JWT_ISSUER"] is None and config["JWT_AUDIENCE"] is None
    assert config["BETTER_AUTH_JWKS_URL"] is None
    assert config["METRICS_LISTEN"] is None  # no metrics, nothing more listening


def test_values_are_parsed(tmp_path):
    environ = {
        "BETTER_AUTH_SECRET": SECRET,
        "DATABASE_URL": "postgresql://app:p%40ss@db.internal:5433/tasks",
        "CORS_ORIGINS": "https://a.example.com, https://b.example.com/",
        "CORS_ALLOW_CREDENTIALS": "TRUE",
        "JWT_EXPIRES_IN": "3600",
        "BCRYPT_ROUNDS": "10",
        "BETTER_AUTH_JWKS_URL": "https://app.example.com/api/auth/jwks",
        "METRICS_LISTEN": "[::1]:9464",
    }
    config = load_config(environ, str(tmp_path))
    assert config["METRICS_LISTEN"] == ("::1", 9464)
    assert config["BETTER_AUTH_JWKS_URL"] == "https://app.example.com/api/auth/jwks"
    assert config["CORS_ORIGINS"] == ["https://a.example.com", "https://b.example.com"]
    assert config["CORS_ALLOW_CREDENTIALS"] is True
    assert (config["JWT_EXPIRES_IN"], config["BCRYPT_ROUNDS"]) == (3600, 10)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"BETTER_AUTH_SECRET": ""}, "BETTER_AUTH_SECRET: missing"),
        ({"BETTER_AUTH_SECRET": "short"}, "BETTER_AUTH_SECRET: too short (5 characters)"),
        ({"DATABASE_URL": "mysql://x/y"}, "DATABASE_URL: cannot use 'mysql://x/y'"),
        ({"DATABASE_URL": "postgresql://host:port/db"}, "DATABASE_URL: bad port"),
        ({"DATABASE_URL": "postgresql://host"}, "DATABASE_URL: no database name"),
        ({"DATABASE_URL": "postgresql://h1:5432,h2:x/db"}, "DATABASE_URL: bad port"),
        ({"DATABASE_URL": "postgresql://h1:5432,h2:65536/db"}, "DATABASE_URL: bad port"),
        ({"DATABASE_URL": "postgresql://h1,h2/db?port=1,2,3"}, "DATABASE_URL: 3 ports for 2 hosts"),
        (
            {"DATABASE_URL": "postgresql://h/db?target_session_attrs=readwrite"},
            "DATABASE_URL: target_session_attrs 'readwrite' is not one of any, read-write,",
        ),
        ({"DATABASE_URL": "postgresql://h/db?sslmode=on"}, "DATABASE_URL: sslmode 'on' is not"),
        (
            {"DATABASE_URL": "postgresql://h/db?connect_timeout=soon"},
            "DATABASE_URL: connect_timeout is a number of seconds",
        ),
        (
            {"DATABASE_URL": "postgresql://u:secret@h/db?bogus=1"},
            "DATABASE_URL: invalid dsn: invalid URI",
        ),
        ({"JWT_EXPIRES_IN": "a day"}, "JWT_EXPIRES_IN: 'a day' is not a whole number"),
        ({"BCRYPT_ROUNDS": "3"}, "BCRYPT_ROUNDS: 3 is out of range; use a number between 4 and 31"),
        ({"DB_POOL_SIZE": "0"}, "DB_POOL_SIZE: 0 is out of range"),
        ({"MAX_CONTENT_LENGTH": "-1"}, "MAX_CONTENT_LENGTH: -1 is out of range"),
        ({"CORS_ALLOW_CREDENTIALS": "maybe"}, "CORS_ALLOW_CREDENTIALS: 'maybe' is not a boolean"),
        ({"SMTP_URL": "mail.example.com:25"}, "SMTP_URL: not a mail server"),
        ({"SMTP_URL": "smtp://user:secret@host:port"}, "SMTP_URL: not a mail server like"),
        ({"MAIL_FROM": "taskapi"}, "MAIL_FROM: 'taskapi' is not a sender"),
        ({"PASSWORD_RESET_URL": "https://x.io/r?a=1"}, "PASSWORD_RESET_URL: 'https://x.io/r?a=1'"),
        ({"EMAIL_VERIFY_URL": "https://bücher.de/v"}, "EMAIL_VERIFY_URL: 'https://bücher.de/v'"),
        ({"PASSWORD_MIN_LENGTH": "6"}, "PASSWORD_MIN_LENGTH: 6 is out of range"),
        ({"LOCAL_ACCOUNTS": "maybe"}, "LOCAL_ACCOUNTS: 'maybe' is not a boolean"),
        ({"CORS_ORIGINS": "localhost:3000"}, "CORS_ORIGINS: 'localhost:3000' is not an origin"),
        ({"BETTER_AUTH_JWKS_URL": "app.example.com/jwks"}, "BETTER_AUTH_JWKS_URL: 'app.exa"),
        ({"BETTER_AUTH_JWKS_URL": "file:///etc/jwks.json"}, "BETTER_AUTH_JWKS_URL: 'file:"),
        ({"METRICS_LISTEN": "9464"}, "METRICS_LISTEN: '9464' is not HOST:PORT"),
        ({"METRICS_LISTEN": "127.0.0.1:"}, "METRICS_LISTEN: '127.0.0.1:' is not HOST:PORT"),
        ({"METRICS_LISTEN": "[::1]:99999"}, "METRICS_LISTEN: '[::1]:99999' is not HOST:PORT"),
        ({"METRICS_LISTEN": "[]:9464"}, "METRICS_LISTEN: '[]:9464' is not HOST:PORT"),
    ],
)
def test_each_mistake_is_one_line_naming_the_variable(tmp_path, environ, message):
    with pytest.raises(ConfigError) as error:
        load_config({"BETTER_AUTH_SECRET": SECRET, **environ}, str(tmp_path))
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://app@h1,h2:5433/tasks",  # h1 on libpq's default port, 5432
        "postgresql://app@h1:5432,h2/tasks?target_session_attrs=read-write&connect_timeout=2",
        "postgresql://app@[::1]:5432,h2:5432/tasks?sslmode=verify-full",
        "postgresql:///tasks?host=h1,h2&port=5432",
    ],
)
def test_every_multi_host_form_libpq_reads_is_taken(tmp_path, url):
    config = load_config({"BETTER_AUTH_SECRET": SECRET, "DATABASE_URL": url}, str(tmp_path))
    assert config["DATABASE_URL"] == url


def test_all_mistakes_are_reported_at_once(tmp_path):
    with pytest.raises(ConfigError) as error:
        load_config({"BCRYPT_ROUNDS": "x", "DB_POOL_SIZE": "y"}, str(tmp_path))
    lines = str(error.value).splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "BCRYPT_ROUNDS",
        "DB_POOL_SIZE",
        "BETTER_AUTH_SECRET",
    ]


def test_create_app_refuses_a_short_secret(tmp_path):
    with pytest.raises(ConfigError, match="BETTER_AUTH_SECRET"):
        create_app({"BETTER_AUTH_SECRET": "x" * 31, "DATABASE_URL": f"sqlite:///{tmp_path}/t.db"})


@pytest.mark.parametrize(
    ("settings", "line"),
    [
        ({"BETTER_AUTH_SECRET": "too-short"}, "BETTER_AUTH_SECRET: too short (9 characters)"),
        (
            {"BETTER_AUTH_SECRET": SECRET, "DATABASE_URL": "postgresql://u:hunter2@h1,h2:x/db"},
            "DATABASE_URL: bad port: each host's port is a number",
        ),
    ],
)
def test_production_entry_point_refuses_to_start_with_one_clear_line(tmp_path, settings, line):
    environ = {"PATH": "/usr/bin:/bin", **settings}
    result = subprocess.run(
        [sys.executable, "-c", "import wsgi"],
        cwd=tmp_path.parent,
        env={**environ, "PYTHONPATH": ROOT},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith(f"taskapi: cannot start: {line}")
    assert "Traceback" not in result.stderr and "hunter2" not in result.stderr


@pytest.mark.parametrize(
    "origin",
    [
        "https://*.com",
        "https://*",
        "https://app.example.com/path",
        "https://a|b.com",
        "https://a.*.com",
    ],
)
def test_origins_are_origins_or_one_wildcard_label(tmp_path, origin):
    with pytest.raises(ConfigError, match="CORS_ORIGINS: .* is not an origin"):
        load_config({"BETTER_AUTH_SECRET": SECRET, "CORS_ORIGINS": origin}, str(tmp_path))


def test_init_db_without_a_secret_says_so_in_one_line(tmp_path):
    flask = Path(sys.executable).parent / "flask"
    result = subprocess.run(
        [flask, "--app", "taskapi", "init-db"],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": ROOT, "PYTHON_DOTENV_DISABLED": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("Error: BETTER_AUTH_SECRET: missing")
