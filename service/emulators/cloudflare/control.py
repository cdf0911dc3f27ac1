"""The control API under ``/_emulator``: meetings and participants, recordings, time, faults,
webhooks, and the public key a service needs to verify them.

A thin JSON layer over :class:`CloudflareEmulator`, for tests and demos over HTTP. The prefix
cannot collide with RealtimeKit's paths (they start ``/client/v4``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import BaseRoute

from service.emulators.framework.clock import Clock
from service.emulators.framework.control import (
    deliveries,
    json_body,
    optional,
    query_flag,
    route,
    shared_routes,
)

from .faults import FaultConfig

if TYPE_CHECKING:
    from .emulator import CloudflareEmulator


def control_routes(emu: CloudflareEmulator) -> list[BaseRoute]:
    """Routes relative to ``/_emulator``."""

    async def config(request: Request) -> Any:
        cfg = emu.config
        return {
            "account_id": cfg.account_id,
            "app_id": cfg.app_id,
            "webhook_url": emu.engine.webhook_url,
            "speed": emu.clock.speed,
            "qps_limit": emu.qps_limit(),
            "empty_timeout": cfg.empty_timeout,
            "seed": cfg.seed,
        }

    async def public_key(request: Request) -> Any:
        return PlainTextResponse(emu.public_key_pem)

    async def get_webhooks(request: Request) -> Any:
        return deliveries(request, emu.notifier)

    async def put_webhooks(request: Request) -> Any:
        emu.set_webhook_url(optional(await json_body(request), "url", str))
        return {"url": emu.engine.webhook_url}

    async def meetings(request: Request) -> Any:
        return [emu.meeting(m) for m in emu.engine.meetings]

    async def meeting(request: Request) -> Any:
        return emu.meeting(request.path_params["meeting"])

    async def join(request: Request) -> Any:
        data = await json_body(request)
        meeting_id = request.path_params["meeting"]
        peer = emu.join(
            meeting_id, optional(data, "peer_id", str), optional(data, "name", str) or "guest"
        )
        return JSONResponse({"peer_id": peer, **emu.meeting(meeting_id)}, 201)

    async def leave(request: Request) -> Any:
        meeting_id = request.path_params["meeting"]
        emu.leave(meeting_id, request.path_params["peer"])
        return emu.meeting(meeting_id)

    async def end(request: Request) -> Any:
        meeting_id = request.path_params["meeting"]
        emu.end_meeting(meeting_id)
        return emu.meeting(meeting_id)

    async def recordings(request: Request) -> Any:
        return emu.recordings(
            meeting_id=request.query_params.get("meeting_id"), live=query_flag(request, "live")
        )

    async def recording(request: Request) -> Any:
        return emu.recording(request.path_params["rid"])

    async def kill(request: Request) -> Any:
        emu.kill(request.path_params["rid"])
        return emu.recording(request.path_params["rid"])

    return [
        *shared_routes(emu, FaultConfig, _clock_json),
        route("/config", config, ["GET"]),
        route("/public-key", public_key, ["GET"]),
        route("/webhooks", get_webhooks, ["GET"]),
        route("/webhooks", put_webhooks, ["PUT"]),
        route("/meetings", meetings, ["GET"]),
        route("/meetings/{meeting}/participants/{peer}", leave, ["DELETE"]),
        route("/meetings/{meeting}/participants", join, ["POST"]),
        route("/meetings/{meeting}/end", end, ["POST"]),
        route("/meetings/{meeting}", meeting, ["GET"]),
        route("/recordings", recordings, ["GET"]),
        route("/recordings/{rid}/kill", kill, ["POST"]),
        route("/recordings/{rid}", recording, ["GET"]),
    ]


def _clock_json(clock: Clock) -> dict[str, Any]:
    return {"now": clock.now(), "speed": clock.speed, "pending_timers": clock.pending}
