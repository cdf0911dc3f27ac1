"""Plumbing of the emulators' control APIs (``/_emulator``): uniform JSON errors and bodies."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

Handler = Callable[[Request], Awaitable[Any]]


class ControlError(Exception):
    """A control-API request that cannot be carried out; ``status`` is its HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Turn a handler returning JSON-able data into an endpoint with uniform errors."""

    async def wrapped(request: Request) -> Response:
        try:
            result = await handler(request)
        except ControlError as exc:
            return JSONResponse({"error": str(exc)}, exc.status)
        except (ValueError, TypeError, KeyError) as exc:
            return JSONResponse({"error": str(exc)}, 400)
        if isinstance(result, Response):
            return result
        return JSONResponse(result)

    return wrapped


async def json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        return {}
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    return data


def optional(data: dict[str, Any], key: str, *kinds: type) -> Any:
    """An optional field of one of ``kinds`` (``true`` is not accepted as a number)."""
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise ValueError(f"{key} has the wrong type")
    return value
