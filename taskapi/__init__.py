"""taskapi: the REST backend of a multi-user todo app."""

import os
from importlib.resources import files

from flask import Flask
from flask_cors import CORS

from . import auth, db, health, tasks
from .api import Api, JSONProvider
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
    CORS(
        app,
        origins=app.config["CORS_ORIGINS"],
        supports_credentials=app.config["CORS_ALLOW_CREDENTIALS"],
        allow_headers=["Authorization", "Content-Type", "If-Match", "X-Request-ID"],
        expose_headers=["X-Pagination", "ETag", "Location", "Retry-After", "X-Request-ID"],
        max_age=600,
    )
    api = Api(app)  # first: its hooks time and label every request, the refused ones too
    auth.init_app(app)
    for blueprint in (auth.blp, tasks.blp, health.blp):
        api.register_blueprint(blueprint)
    tasks.add_aliases(app)
    return app
