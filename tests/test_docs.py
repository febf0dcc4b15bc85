import re

from openapi_spec_validator import validate

PUBLIC_OPERATIONS = {
    ("post", "/api/auth/signup"),
    ("post", "/api/auth/signin"),
    ("post", "/api/auth/refresh"),
    ("post", "/api/auth/password-reset"),
    ("post", "/api/auth/password-reset/confirm"),
    ("get", "/health"),
}


def operations(spec):
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method != "parameters":
                yield method, path, operation


def test_openapi_document_is_valid(client):
    response = client.get("/openapi.json")
    assert response.status_code == 200
    validate(response.json)


def test_openapi_documents_every_route(client, app):
    spec = client.get("/openapi.json").json
    documented = {(method, path) for method, path, _ in operations(spec)}
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith(("accounts.", "sessions.", "auth.", "tasks.", "health.")):
            canonical = rule.rule.replace("/api/<user_id>/", "/api/users/<user_id>/")  # aliases
            path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", canonical)
            for method in rule.methods - {"HEAD", "OPTIONS"}:
                assert (method.lower(), path) in documented


def test_bearer_scheme_is_declared_and_applied(client):
    spec = client.get("/openapi.json").json
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
    }
    assert spec["security"] == [{"bearerAuth": []}]
    for method, path, operation in operations(spec):
        assert operation["summary"], (method, path)
        if (method, path) in PUBLIC_OPERATIONS:
            assert operation["security"] == []
        else:
            assert "security" not in operation  # the document-wide bearer requirement applies


def test_error_schema_documents_detail(client):
    spec = client.get("/openapi.json").json
    assert set(spec["components"]["schemas"]["Error"]["properties"]) >= {
        "code",
        "status",
        "message",
        "errors",
        "detail",
    }


def test_docs_page_loads_only_local_assets(client):
    response = client.get("/docs")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert not re.search(r"(src|href)=\"(https?:)?//", page)
    assert re.search(r'"validatorUrl": ?null', page)
    for asset in re.findall(r"(?:src|href)=\"(/docs/assets/[^\"]+)\"", page):
        assert client.get(asset).status_code == 200
    assert len(re.findall(r"/docs/assets/", page)) == 3
