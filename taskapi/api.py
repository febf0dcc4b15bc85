"""flask-smorest, subclassed once (the one error shape, 503 on database outages, bearer docs),
and what every response carries: a request id, security headers and one access-log line."""

import functools
import http
import json
import logging
import re
import time
import uuid

import marshmallow as ma
import orjson
from apispec import BasePlugin
from flask import g, request
from flask.json.provider import DefaultJSONProvider
from flask_smorest import Api as BaseApi
from flask_smorest import Blueprint as BaseBlueprint
from flask_smorest import abort
from flask_smorest.error_handler import ErrorSchema as BaseErrorSchema
from flask_smorest.pagination import PaginationMetadataSchema
from peewee import InterfaceError, InternalError, OperationalError
from playhouse.pool import MaxConnectionsExceeded
from psycopg2.errors import QueryCanceled, ReadOnlySqlTransaction
from webargs.flaskparser import FlaskParser, is_json_request
from werkzeug.exceptions import ServiceUnavailable

__all__ = ["Api", "Blueprint", "abort", "add_aliases"]

log = logging.getLogger(__name__)
access_log = logging.getLogger("taskapi.access")

OPENAPI_CONFIG = {
    "API_TITLE": "taskapi",
    "API_VERSION": "1.0.0",
    "OPENAPI_VERSION": "3.0.3",
    "OPENAPI_URL_PREFIX": "/",
    "OPENAPI_JSON_PATH": "openapi.json",
    "OPENAPI_SWAGGER_UI_PATH": "docs",
    # Served by the app itself (see create_app), so the docs render without internet access.
    "OPENAPI_SWAGGER_UI_URL": "/docs/assets/",
    "OPENAPI_SWAGGER_UI_CONFIG": {"validatorUrl": None, "persistAuthorization": True},
    "API_SPEC_OPTIONS": {
        "info": {
            "description": "Accounts, JWT bearer auth and per-user tasks for a todo app. "
            "Sign up or sign in, then send `Authorization: Bearer <access_token>`.",
        },
        "security": [{"bearerAuth": []}],
    },
}
BEARER_SCHEME = {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
DATABASE_DOWN = (OperationalError, InterfaceError, MaxConnectionsExceeded)
REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
API_POLICY = "default-src 'none'; frame-ancestors 'none'"
# Swagger UI's page starts itself with an inline script and styles; everything else is 'self'.
DOCS_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; frame-ancestors 'none'"
)
DOCS_ENDPOINTS = {"api-docs.openapi_swagger_ui", "static"}
TOO_LARGE = "The request body is too large."


class ErrorResponses(BasePlugin):
    """Documents each error status an operation can answer, instead of one catch-all
    `default`, so clients and the contract fuzzer know every code to expect."""

    def operation_helper(self, path=None, operations=None, **kwargs):
        for method, operation in operations.items():
            codes = [500, 503]
            names = {parameter.get("name") for parameter in operation.get("parameters", [])}
            if operation.get("security") != []:
                codes += [401, 409]  # 409: a frontend token whose email another account has
            if "{user_id}" in path and (method != "get" or "q" in names):
                codes.append(429)  # the user's write or search limit (bounds.py)
            if "{user_id}" in path:
                codes.append(403)
            if "requestBody" in operation:
                codes += [400, 413, 415, 422]
            if "If-Match" in names:
                codes.append(412)
            responses = operation.setdefault("responses", {})
            for code in codes:
                if code not in responses and str(code) not in responses:
                    responses[code] = http.HTTPStatus(code).name


class ErrorSchema(BaseErrorSchema):
    detail = ma.fields.String(metadata={"description": "Same text as message"})


class Api(BaseApi):
    ERROR_SCHEMA = ErrorSchema
    DEFAULT_ERROR_RESPONSE_NAME = None  # ErrorResponses lists the real ones

    def init_app(self, app, **kwargs):
        for key, value in OPENAPI_CONFIG.items():
            app.config.setdefault(key, value)
        super().init_app(app, spec_kwargs={"extra_plugins": [ErrorResponses()]}, **kwargs)
        self.spec.components.security_scheme("bearerAuth", BEARER_SCHEME)
        for error in DATABASE_DOWN:
            app.register_error_handler(error, self.handle_database_down)
        app.register_error_handler(InternalError, self.handle_read_only)
        app.before_request(start_request)
        app.after_request(finish_request)

    def handle_http_exception(self, error):
        payload, code, headers = super().handle_http_exception(error)
        if "message" not in payload:
            payload["message"] = "Invalid request." if "errors" in payload else error.description
        if code == 413:  # in the words of waitress's and nginx's own 413 (see edge.py)
            payload["message"] = TOO_LARGE
        payload["detail"] = payload["message"]
        if code == 401:
            headers.setdefault("WWW-Authenticate", "Bearer")
        # Keep what werkzeug adds (Allow on 405), never its text/html Content-Type.
        for name, value in error.get_headers():
            if name.lower() != "content-type":
                headers.setdefault(name, value)
        return payload, code, headers

    def handle_read_only(self, error):
        """A write that reached a standby (a primary just demoted, say): try again shortly."""
        if isinstance(getattr(error, "orig", None), ReadOnlySqlTransaction):
            return self.handle_database_down(error)
        raise error

    def handle_database_down(self, error):
        if is_timed_out(error):
            log.warning("statement timed out: %s", error)
            message, retry_after = "The request took too long in the database; try again later.", 5
        else:
            log.warning("database unavailable: %s", error)
            message, retry_after = "The database is unavailable; try again shortly.", 1
        return self.handle_http_exception(ServiceUnavailable(message, retry_after=retry_after))


def is_timed_out(error):
    """Whether a database error is a statement that DB_STATEMENT_TIMEOUT stopped."""
    stopped = isinstance(getattr(error, "orig", None), QueryCanceled)
    return stopped or str(error) == "interrupted"  # SQLite's word for it


def start_request():
    g.started = time.perf_counter()
    given = request.headers.get("X-Request-ID", "")
    g.request_id = given if REQUEST_ID.fullmatch(given) else uuid.uuid4().hex


def finish_request(response):
    """Security headers, the request id, and the access-log line (never bodies or headers)."""
    request_id = g.get("request_id") or uuid.uuid4().hex
    docs = request.endpoint in DOCS_ENDPOINTS
    response.headers["X-Request-ID"] = request_id
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    # What CORS answers depends on Origin, so no cache may give one origin's answer to another.
    vary = response.headers.get("Vary")
    response.headers["Vary"] = f"{vary}, Origin" if vary else "Origin"
    response.headers["Content-Security-Policy"] = DOCS_POLICY if docs else API_POLICY
    if "Cache-Control" not in response.headers:
        response.headers["Cache-Control"] = "no-store"
    if not access_log.isEnabledFor(logging.INFO):
        return response
    started = g.get("started", time.perf_counter())
    line = {
        "method": request.method,
        "route": request.url_rule.rule if request.url_rule else None,
        "status": response.status_code,
        "duration_ms": round((time.perf_counter() - started) * 1000, 2),
        "request_id": request_id,
        "user_id": g.user.id if "user" in g else None,
    }
    # The fields are the line (see wsgi.py); the message says them briefly for other formats.
    access_log.info("%s %s %s", line["method"], line["route"], line["status"], extra=line)
    return response


class JSONProvider(DefaultJSONProvider):
    """Responses encoded by orjson: a page of tasks takes a tenth of the time json.dumps does.
    Flask's own encoder still writes what orjson refuses (text with unpaired surrogates, which
    an error message may quote) and the indented output of debug mode."""

    sort_keys = False  # fields in their schema's order
    OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS

    def dumps(self, obj, **kwargs):
        if "indent" not in kwargs:
            try:
                return orjson.dumps(obj, default=self.default, option=self.OPTIONS).decode()
            except TypeError:  # orjson.JSONEncodeError: a value orjson does not write
                pass
        return super().dumps(obj, **kwargs)


class Parser(FlaskParser):
    """The contract's 415 and 400, which webargs would answer as 422 (see the style guide)."""

    def _raw_load_json(self, req):
        if not is_json_request(req):
            abort(415, message="Send the body as JSON, with Content-Type: application/json.")
        try:
            data = super()._raw_load_json(req)
        except RecursionError:
            abort(400, message="The JSON body is nested too deeply.")
        except json.JSONDecodeError:
            raise  # webargs answers it: an empty body has no fields, anything else is a 400
        except ValueError:  # an integer of over 4,300 digits, which Python refuses to convert
            abort(400, message="The JSON body holds a number too long to read.")
        if not isinstance(data, dict):
            abort(400, message="The JSON body must be an object.")
        return data

    def _handle_invalid_json_error(self, error, req, *args, **kwargs):
        abort(400, message="The body is not valid JSON.")


class PageSchema(PaginationMetadataSchema):
    next_cursor = ma.fields.String(
        metadata={
            "description": "The task list only: send it as `after` for the next page (absent on "
            "the last one). Opaque, for this user and this sort."
        }
    )


NUMBERED = {"page", "previous_page", "next_page"}


class Blueprint(BaseBlueprint):
    ARGUMENTS_PARSER = Parser()
    # flask-smorest builds a marshmallow schema for every page's X-Pagination; what it says
    # depends on three numbers only.
    _make_pagination_metadata = staticmethod(
        functools.lru_cache(maxsize=1024)(BaseBlueprint._make_pagination_metadata)
    )

    def _set_pagination_metadata(self, page_params, result, headers):
        """flask-smorest's header, with next_cursor where the view sets one (the task list).
        A page reached by cursor has no number: page, previous_page and next_page are left out."""
        metadata = self._make_pagination_metadata(
            page_params.page, page_params.page_size, page_params.item_count
        )
        if getattr(page_params, "after", False):
            metadata = {key: value for key, value in metadata.items() if key not in NUMBERED}
        if next_cursor := getattr(page_params, "next_cursor", None):
            metadata = {**metadata, "next_cursor": next_cursor}  # the cached dict stays as it is
        headers = headers or {}
        headers[self.PAGINATION_HEADER_NAME] = json.dumps(metadata)
        return result, headers

    def _document_pagination_metadata(self, spec, resp_doc):
        """The header's value is JSON text, which OpenAPI says with `content`, not `schema`."""
        resp_doc.setdefault("headers", {})[self.PAGINATION_HEADER_NAME] = {
            "description": "Pagination metadata, as JSON",
            "content": {"application/json": {"schema": PageSchema}},
        }


def add_aliases(app, blueprints):
    """Serve every route of these blueprints without the /users segment too, as the same
    endpoint. OPTIONS is left for Flask to add: given explicitly, it would turn off Flask's own
    answer to it, and every CORS preflight on an alias would reach the view (a 500)."""
    prefixes = tuple(f"{blueprint.name}." for blueprint in blueprints)
    for rule in list(app.url_map.iter_rules()):
        if rule.endpoint.startswith(prefixes):
            alias = rule.rule.replace("/api/users/", "/api/", 1)
            app.add_url_rule(alias, endpoint=rule.endpoint, methods=rule.methods - {"OPTIONS"})
