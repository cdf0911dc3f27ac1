"""The control API under ``/_emulator``: meetings and participants, recordings, time, faults,
webhooks, and the public key a service needs to verify them.

A thin JSON layer over :class:`CloudflareEmulator`, for tests and demos over HTTP. The prefix
cannot collide with RealtimeKit's paths (they start ``/client/v4``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import BaseRoute, Route

from service.emulators.common.control import Handler, endpoint, json_body, optional

from .faults import FaultConfig

if TYPE_CHECKING:
    from .emulator import CloudflareEmulator


def control_routes(emu: CloudflareEmulator) -> list[BaseRoute]:
    """Routes relative to ``/_emulator``."""

    async def health(request: Request) -> Any:
        return {"ok": True, "now": emu.clock.now()}

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

    async def get_clock(request: Request) -> Any:
        clock = emu.clock
        return {"now": clock.now(), "speed": clock.speed, "pending_timers": clock.pending}

    async def put_clock(request: Request) -> Any:
        speed = optional(await json_body(request), "speed", int, float)
        if speed is None:
            raise ValueError("speed is required")
        emu.clock.set_speed(float(speed))
        return await get_clock(request)

    async def advance(request: Request) -> Any:
        data = await json_body(request)
        seconds = optional(data, "seconds", int, float)
        if seconds is None:
            raise ValueError("seconds is required")
        fired = emu.advance(float(seconds))
        if data.get("settle"):
            await emu.settle()
        return {"now": emu.clock.now(), "fired": fired}

    async def get_faults(request: Request) -> Any:
        return emu.faults.config.to_json()

    async def put_faults(request: Request) -> Any:
        data = await json_body(request)
        if request.method == "PATCH":
            emu.set_faults(emu.faults.config.merged(data))
        else:
            emu.set_faults(FaultConfig.from_json(data))
        return emu.faults.config.to_json()

    async def get_webhooks(request: Request) -> Any:
        limit = int(request.query_params.get("limit", "1000"))
        log = list(emu.notifier.log)[-limit:]
        return {"stats": dict(emu.notifier.stats), "deliveries": [d.to_json() for d in log]}

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
        live = request.query_params.get("live")
        return emu.recordings(
            meeting_id=request.query_params.get("meeting_id"),
            live=None if live is None else live.lower() in ("1", "true", "yes"),
        )

    async def recording(request: Request) -> Any:
        return emu.recording(request.path_params["rid"])

    async def kill(request: Request) -> Any:
        emu.kill(request.path_params["rid"])
        return emu.recording(request.path_params["rid"])

    async def stats(request: Request) -> Any:
        return emu.stats_json()

    def route(path: str, handler: Handler, methods: list[str]) -> Route:
        return Route(path, endpoint(handler), methods=methods)

    return [
        route("/health", health, ["GET"]),
        route("/config", config, ["GET"]),
        route("/public-key", public_key, ["GET"]),
        route("/clock", get_clock, ["GET"]),
        route("/clock", put_clock, ["PUT"]),
        route("/clock/advance", advance, ["POST"]),
        route("/faults", get_faults, ["GET"]),
        route("/faults", put_faults, ["PUT", "PATCH"]),
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
        route("/stats", stats, ["GET"]),
    ]
