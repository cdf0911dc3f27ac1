"""One error shape for every API answer: ``{"error": {"code", "message", "field"}}``."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response


class ApiError(Exception):
    """Raised by handlers; rendered by :func:`api_error_handler`."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        error["field"] = field
    return {"error": error}


def from_validation(exc: ValidationError, prefix: str = "") -> ApiError:
    """A pydantic error as a 422 naming the first bad field (dotted path)."""
    err = exc.errors()[0]
    path = ".".join(str(p) for p in err["loc"])
    field = f"{prefix}{path}" if path else prefix.rstrip(".") or "body"
    return ApiError(422, "invalid", f"{field}: {err['msg']}", field=field)


async def api_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return JSONResponse(error_body(exc.code, exc.message, exc.field), status_code=exc.status)
