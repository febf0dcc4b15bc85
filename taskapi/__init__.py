"""taskapi: the REST backend of a multi-user todo app."""

import os
from importlib.resources import files

from flask import Flask

from . import (
    accounts,
    auth,
    calendars,
    db,
    edge,
    health,
    lists,
    metrics,
    purge,  # noqa: F401 (its job runs in the delivery worker's rounds)
    reminders,
    sessions,
    tasks,
    verification,
    webhooks,
)
from .api import Api, JSONProvider, add_aliases
from .config import load_config

# Swagger UI's own files, from the flask-swagger-ui package, served under /docs/assets.
SWAGGER_UI_FILES = str(files("flask_swagger_ui") / "dist")


def create_app(config=None):
    """Build the app from the environment, or from `config` alone (tests pass one)."""
    app = Flask(__name__, static_folder=SWAGGER_UI_FILES, static_url_path="/docs/assets")
    app.json = JSONProvider(app)
    app.config.from_mapping(
        load_config(os.environ if config is None else config, app.instance_path)
    )
    db.init_app(app)
    api = Api(app)  # first: its hooks time and label every request, the refused ones too
    edge.init_app(app)  # CORS, proxies, rate limits, the password gate: before the token check
    auth.init_app(app)
    metrics.init_app(app)  # off unless METRICS_LISTEN is set
    local = (accounts.blp, sessions.blp, verification.blp) if app.config["LOCAL_ACCOUNTS"] else ()
    users = [tasks.blp, lists.blp, reminders.blp, webhooks.blp]  # under /api/users/{user_id}
    for blueprint in (*local, auth.blp, *users, calendars.blp, health.blp):
        api.register_blueprint(blueprint)
    add_aliases(app, users)
    return app
