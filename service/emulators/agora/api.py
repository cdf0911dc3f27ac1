"""The HTTP face of Agora's REST API: routing, Basic auth, rate limit, faults, JSON decoding.

Checks run in the gateway's order (route → auth → rate limit → body), each with Agora's
documented body; then injected latency/errors/timeouts; then :class:`CloudRecordingApi`.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service.emulators.framework import gateway
from service.emulators.framework.faults import ApiFault

from .config import EmulatorConfig
from .responses import error
from .rest import CloudRecordingApi, Reply

_BASE = r"^/v1/apps/(?P<app>[^/]+)/cloud_recording"
_SID = _BASE + r"/resourceid/(?P<rid>[^/]+)/sid/(?P<sid>[^/]+)/mode/(?P<mode>[^/]+)"
_ROUTES: gateway.RouteTable = (
    ("POST", re.compile(_BASE + r"/acquire$"), "acquire"),
    (
        "POST",
        re.compile(_BASE + r"/resourceid/(?P<rid>[^/]+)/mode/(?P<mode>[^/]+)/start$"),
        "start",
    ),
    ("GET", re.compile(_SID + r"/query$"), "query"),
    ("POST", re.compile(_SID + r"/update$"), "update"),
    ("POST", re.compile(_SID + r"/updateLayout$"), "updateLayout"),
    ("POST", re.compile(_SID + r"/stop$"), "stop"),
    ("GET", re.compile(r"^/v1/ncs/ip$"), "ncs_ip"),
    # RTC Channel Management (another product, same host and credentials in the emulator).
    (
        "GET",
        re.compile(r"^/dev/v1/channel/user/(?P<app>[^/]+)/(?P<channel>[^/]+)$"),
        "channelUsers",
    ),
)

NO_ROUTE = {"message": "no Route matched with those values"}
UNAUTHORIZED = {"message": "Unauthorized"}
BAD_CREDENTIALS = {"message": "Invalid authentication credentials"}
RATE_LIMITED = {"message": "API rate limit exceeded"}


class AgoraGateway(gateway.Gateway):
    """Agora's checks and answers on the shared request path."""

    def __init__(
        self, host: gateway.GatewayHost, config: EmulatorConfig, api: CloudRecordingApi
    ) -> None:
        super().__init__(_ROUTES, host)
        self._config = config
        self._api = api
        self._credentials = f"{config.customer_key}:{config.customer_secret}".encode()

    def no_route(self) -> Response:
        return JSONResponse(NO_ROUTE, 404)

    async def serve(self, request: Request, endpoint: str, params: dict[str, str]) -> Response:
        self._stats.received(endpoint)
        reply = await self._handle(request, endpoint, params)
        return JSONResponse(reply.body, reply.status)

    def _authenticate(self, header: str | None) -> Reply | None:
        if not header:
            return Reply(401, UNAUTHORIZED)
        scheme, _, value = header.partition(" ")
        try:
            given = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            return Reply(401, BAD_CREDENTIALS)
        if scheme.lower() != "basic" or not hmac.compare_digest(given, self._credentials):
            return Reply(401, BAD_CREDENTIALS)
        return None

    async def _handle(self, request: Request, endpoint: str, params: dict[str, str]) -> Reply:
        denied = self._authenticate(request.headers.get("authorization"))
        if denied is not None:
            return denied
        app_id = params.get("app", self._config.app_id)
        if app_id != self._config.app_id:
            return Reply(401, BAD_CREDENTIALS)
        if not self._admit(app_id):
            return Reply(429, RATE_LIMITED)
        if endpoint == "ncs_ip":
            return Reply(200, {"data": {"service": {"hosts": [{"primaryIP": "127.0.0.1"}]}}})
        if endpoint == "channelUsers":
            self._clock.run_due()
            return self._api.channel_users(params["channel"])
        body: dict[str, Any] = {}
        if request.method == "POST":
            decoded = await _json_body(request)
            if isinstance(decoded, Reply):
                return decoded
            body = decoded
        answer = await self._carry_out(endpoint, lambda: self._dispatch(endpoint, params, body))
        if isinstance(answer, ApiFault):
            ids = {"resourceId": params.get("rid", ""), "sid": params.get("sid", "")}
            for key in ("cname", "uid"):
                value = body.get(key)
                if isinstance(value, str):
                    ids[key] = value
            return Reply(answer.status, error(answer.code, answer.reason, **ids))
        return answer

    def _dispatch(self, endpoint: str, params: dict[str, str], body: dict[str, Any]) -> Reply:
        api = self._api
        if endpoint == "acquire":
            return api.acquire(params["app"], body)
        if endpoint == "start":
            return api.start(params["app"], params["rid"], params["mode"], body)
        rid, sid, mode = params["rid"], params["sid"], params["mode"]
        if endpoint == "query":
            return api.query(rid, sid, mode)
        if endpoint == "update":
            return api.update(rid, sid, mode, body)
        if endpoint == "updateLayout":
            return api.update_layout(rid, sid, mode, body)
        return api.stop(rid, sid, mode, body)


async def _json_body(request: Request) -> dict[str, Any] | Reply:
    """The body as a JSON object, or code 8 (the older docs' header/JSON error)."""
    content_type = request.headers.get("content-type", "")
    if "application/json" not in content_type.lower():
        return Reply(400, error(8, "Content-Type must be application/json"))
    raw = await request.body()
    try:
        decoded = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        return Reply(400, error(8, "invalid JSON body"))
    if not isinstance(decoded, dict):
        return Reply(400, error(8, "the JSON body must be an object"))
    return decoded
