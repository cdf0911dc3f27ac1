"""The HTTP face of RealtimeKit's recordings API (``docs/providers/cloudflare.md`` §1.1-§1.2).

Checks run in order: route → Bearer token → account/app → rate limit (429 with
``retry-after``) → body; then injected latency, errors and timeouts; then the engine. Answers
use the documented envelope, ``{"success": true, "data": ...}``; errors Cloudflare's v4 shape,
``{"success": false, "errors": [{"code", "message"}]}`` (the error body is not in the doc).
"""

from __future__ import annotations

import hmac
import json
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service.emulators.framework import gateway
from service.emulators.framework.faults import ApiFault

from .config import EmulatorConfig
from .engine import ApiError, Engine

_BASE = r"^/client/v4/accounts/(?P<account>[^/]+)/realtime/kit/(?P<app>[^/]+)/recordings"
_ROUTES: gateway.RouteTable = (
    ("POST", re.compile(_BASE + r"$"), "start"),
    ("GET", re.compile(_BASE + r"$"), "list"),
    ("GET", re.compile(_BASE + r"/active-recording/(?P<meeting>[^/]+)$"), "active"),
    ("GET", re.compile(_BASE + r"/(?P<rid>[^/]+)$"), "get"),
    ("PUT", re.compile(_BASE + r"/(?P<rid>[^/]+)$"), "action"),
)


def failure(status: int, message: str, code: int | None = None, **headers: str) -> Response:
    body = {"success": False, "errors": [{"code": code or status, "message": message}]}
    return JSONResponse(body, status, headers=headers or None)


def success(data: Any, status: int = 200, **extra: Any) -> Response:
    return JSONResponse({"success": True, "data": data, **extra}, status)


class Gateway(gateway.Gateway):
    """RealtimeKit's checks and answers on the shared request path."""

    def __init__(self, host: gateway.GatewayHost, config: EmulatorConfig, engine: Engine) -> None:
        super().__init__(_ROUTES, host)
        self._config = config
        self._engine = engine
        self._token = f"Bearer {config.api_token}".encode()

    def no_route(self) -> Response:
        return failure(404, "No route for that URI", 7000)

    async def serve(self, request: Request, endpoint: str, params: dict[str, str]) -> Response:
        body: dict[str, Any] = {}
        if request.method in ("POST", "PUT"):
            try:
                decoded = json.loads(await request.body())
            except (UnicodeDecodeError, ValueError):
                return failure(400, "invalid JSON body")
            if not isinstance(decoded, dict):
                return failure(400, "the JSON body must be an object")
            body = decoded
        if endpoint == "action":
            endpoint = str(body.get("action"))
            if endpoint not in ("stop", "pause", "resume"):
                return failure(400, "action must be one of stop, pause, resume")
        self._stats.received(endpoint)
        given = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(given, self._token):
            return failure(401, "Authentication error", 10000)
        cfg = self._config
        if params["account"] != cfg.account_id or params["app"] != cfg.app_id:
            return failure(404, "app not found in this account")
        if not self._admit(cfg.app_id):
            return failure(429, "Rate limit exceeded", 971, **{"retry-after": "1"})
        answer = await self._carry_out(
            endpoint, lambda: self._dispatch(endpoint, params, body, request)
        )
        if isinstance(answer, ApiFault):
            return failure(answer.status, answer.reason, answer.code)
        return answer

    def _dispatch(
        self, endpoint: str, params: dict[str, str], body: dict[str, Any], request: Request
    ) -> Response:
        engine = self._engine
        try:
            if endpoint == "start":
                return success(engine.start(body).to_rest())
            if endpoint == "get":
                return success(engine.get(params["rid"]).to_rest())
            if endpoint == "active":
                active = engine.active(params["meeting"])
                if active is None:
                    raise ApiError(404, "No active recording for this meeting")
                return success(active.to_rest())
            if endpoint == "list":
                return self._list(request)
            return success(engine.act(params["rid"], endpoint).to_rest())
        except ApiError as exc:
            return failure(exc.status, str(exc), exc.code)

    def _list(self, request: Request) -> Response:
        q = request.query_params
        try:
            page = max(int(q.get("page_no", "1")), 1)
            per_page = min(max(int(q.get("per_page", "20")), 1), 100)
        except ValueError:
            return failure(400, "page_no and per_page must be integers")
        meeting = q.get("meeting_id")
        statuses = set(q.getlist("status"))
        found = [
            r
            for r in self._engine.recordings.values()
            if (meeting is None or r.meeting_id == meeting)
            and (not statuses or r.status in statuses)
        ]
        desc = q.get("sort_order", "DESC").upper() != "ASC"
        found.sort(key=lambda r: r.invoked_ms, reverse=desc)
        start = (page - 1) * per_page
        window = found[start : start + per_page]
        paging = {
            "total_count": len(found),
            "start_offset": start,
            "end_offset": start + len(window),
        }
        return success([r.to_rest() for r in window], paging=paging)
