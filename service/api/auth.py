"""Bearer-token authentication: a token names its tenant; rooms are tenant-scoped."""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from starlette.requests import Request

from service.api.errors import ApiError
from service.api.schemas import ROOM_NAME


def tenant_of(request: Request, tokens: Mapping[str, str]) -> str:
    """The caller's tenant, or a 401 :class:`ApiError`. Tokens are compared in constant time."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "unauthorized", "missing bearer token", field="Authorization")
    for known, tenant in tokens.items():
        if hmac.compare_digest(known.encode(), token.strip().encode()):
            return tenant
    raise ApiError(401, "unauthorized", "invalid bearer token", field="Authorization")


def owns(tenant: str, key: str) -> bool:
    """Whether a ``tenant/...`` key is ``tenant``'s: its first part equals the name exactly
    (a prefix test let ``acme`` read ``acme/eu``'s rows: issue 20)."""
    return key.partition("/")[0] == tenant


def room_of(request: Request, tokens: Mapping[str, str]) -> tuple[str, str, str]:
    """The caller's tenant, the room named in the path, and the room's key ``tenant/room``;
    a 401 or a 422 naming ``room``."""
    tenant = tenant_of(request, tokens)
    name = request.path_params["room"]
    if not ROOM_NAME.fullmatch(name):
        raise ApiError(422, "invalid", "room: 1-64 characters of A-Z a-z 0-9 _ . -", "room")
    return tenant, name, f"{tenant}/{name}"
