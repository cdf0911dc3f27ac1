"""``GET /openapi.json``: the API's contract, built from the same pydantic models that validate.

Request bodies and the room view come from :mod:`service.api.schemas`; the recordings API's
shapes are the documented envelopes (``data``, ``meta``). Every route but the webhooks and the
probes needs a bearer token; the webhooks authenticate with their sender's own scheme.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service.api.schemas import RecordingSpecIn, RoomView

_REF = "#/components/schemas/{model}"
_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "field": {"type": "string"},
            },
        }
    },
}
_DATA = {"type": "object", "required": ["data"], "properties": {"data": {}}}
_ROOM = {"name": "room", "in": "path", "required": True, "schema": {"type": "string"}}
_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": _REF.format(model=model.__name__)}


def _op(
    summary: str,
    ok: dict[int, dict[str, Any] | None],
    params: tuple[dict[str, Any], ...] = (),
    body: dict[str, Any] | None = None,
    secured: bool = True,
) -> dict[str, Any]:
    responses: dict[str, Any] = {
        str(status): {"description": "OK", **(_json(schema) if schema else {})}
        for status, schema in ok.items()
    }
    for status in (400, 401, 404, 409, 412, 413, 422) if secured else (400, 401, 413, 422):
        responses.setdefault(str(status), {"description": "error", **_json(_ERROR)})
    op: dict[str, Any] = {"summary": summary, "responses": responses}
    if params:
        op["parameters"] = list(params)
    if body is not None:
        op["requestBody"] = {"required": False, **_json(body)}
    if not secured:
        op["security"] = []
    return op


def _query(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema}


def build_schema() -> dict[str, Any]:
    """The OpenAPI 3.1 document (pure: no app state)."""
    page = (_query("limit", {"type": "integer"}), _query("offset", {"type": "integer"}))
    rooms = (
        _query("state", {"type": "string", "enum": ["recording", "stopped"]}),
        _query("condition", {"type": "string"}),
        _query("limit", {"type": "integer", "minimum": 1, "maximum": 500}),
        _query("cursor", {"type": "string"}),
    )
    spec_body = _ref(RecordingSpecIn)
    paths: dict[str, Any] = {
        "/v1/rooms": {"get": _op("List the tenant's rooms", {200: {"type": "object"}}, rooms)},
        "/v1/rooms/{room}/recording": {
            "get": _op("A room's desired and observed state", {200: _ref(RoomView)}, (_ROOM,)),
            "put": _op(
                "Declare what a room should be doing (an Idempotency-Key reused with another"
                " body is refused with 422)",
                {200: _ref(RoomView), 201: _ref(RoomView)},
                (_ROOM,),
                spec_body,
            ),
            "delete": _op("Stop, then forget a room", {204: None}, (_ROOM,)),
        },
        "/api/v1/rooms/{room}/recordings/start": {
            "post": _op("Start recording a room", {201: _DATA}, (_ROOM,), {"type": "object"})
        },
        "/api/v1/rooms/{room}/recordings/stop": {
            "post": _op("Stop a room's recording", {200: _DATA}, (_ROOM,))
        },
        "/api/v1/rooms/{room}/recordings/sync": {
            "post": _op("Import recordings the provider started", {200: _DATA}, (_ROOM,))
        },
        "/api/v1/recordings": {"get": _op("The tenant's recordings", {200: _DATA}, page)},
        "/api/v1/recordings/{id}": {
            "get": _op("One recording, with its room", {200: _DATA}, (_ID,)),
            "delete": _op(
                "Soft delete a recording that is not recording (409 while it records: stop it"
                " first)",
                {200: _DATA},
                (_ID,),
            ),
        },
        "/api/v1/recordings/{id}/download": {
            "get": _op("A presigned download URL", {200: {"type": "object"}}, (_ID,))
        },
        "/api/v1/recordings/{id}/archive": {
            "post": _op("Move to cold storage", {200: _DATA}, (_ID,))
        },
        "/api/v1/recordings/{id}/recover": {
            "post": _op("Re-check a stalled recording", {200: _DATA}, (_ID,))
        },
    }
    for name, what in (
        ("agora", "Agora NCS notifications (Agora-Signature-V2 / Agora-Signature)"),
        ("cloudflare", "Cloudflare RealtimeKit webhooks (RSA-SHA256 signature)"),
        ("storage", "S3, MinIO and R2 event notifications (bearer secret)"),
    ):
        paths[f"/webhooks/{name}"] = {
            "post": _op(what, {200: {"type": "object"}}, body={"type": "object"}, secured=False)
        }
    for path, what in (("/healthz", "Process up"), ("/readyz", "Event log reachable")):
        paths[path] = {"get": _op(what, {200: {"type": "object"}}, secured=False)}
    schemas: dict[str, Any] = {}
    for model in (RecordingSpecIn, RoomView):
        schema = model.model_json_schema(ref_template=_REF)
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    return {
        "openapi": "3.1.0",
        "info": {"title": "recording-reconciler", "version": "0.1.0"},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


async def openapi(request: Request) -> Response:
    return JSONResponse(build_schema())
