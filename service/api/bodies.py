"""Request bodies of the API: read with a limit, parsed as JSON, refused with a clear 4xx."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from service.api.errors import ApiError
from service.http import BodyTooLarge, read_body

MAX_BODY = 64 * 1024


async def json_body(request: Request, *, optional: bool = False) -> Any:
    """The parsed body; ``optional`` turns an empty body into ``{}``.

    Streamed with the limit, so a huge body is refused (413) before it is all in memory; bad
    JSON, and nesting too deep to parse, are a 400 naming ``body``, never a 500.
    """
    try:
        raw = await read_body(request, MAX_BODY)
    except BodyTooLarge:
        raise ApiError(413, "too_large", f"body: over {MAX_BODY} bytes", "body") from None
    if optional and not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise ApiError(400, "bad_json", "body: not valid JSON", "body") from None
