"""GET /health: is the service up, and can it reach its database?"""

from marshmallow import Schema, fields

from .api import DATABASE_DOWN, Blueprint
from .db import ping

blp = Blueprint("health", __name__, description="Liveness and database reachability.")


class HealthSchema(Schema):
    status = fields.String(required=True, metadata={"example": "ok"})
    database = fields.String(required=True, metadata={"example": "ok"})


@blp.get("/health")
@blp.response(200, HealthSchema)
@blp.alt_response(503, schema=HealthSchema, description="The database is unreachable.")
@blp.doc(security=[])
def health():
    """Check the service and its database (no auth, no writes)."""
    try:
        ping()
    except DATABASE_DOWN:
        return {"status": "unavailable", "database": "unreachable"}, 503
    return {"status": "ok", "database": "ok"}
