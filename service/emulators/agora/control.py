"""The control API under ``/_emulator``: drive channels, time, faults; read tasks and stats.

A thin JSON layer over :class:`AgoraEmulator`'s methods, for tests and demos that talk to the
emulator over HTTP. The prefix cannot collide with Agora's paths (they all start ``/v1``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse
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
    from .emulator import AgoraEmulator


def control_routes(emu: AgoraEmulator) -> list[BaseRoute]:
    """Routes relative to ``/_emulator``."""

    async def config(request: Request) -> Any:
        cfg = emu.config
        return {
            "app_id": cfg.app_id,
            "callback_url": emu.events.routes.recording_url,
            "rtc_callback_url": emu.events.routes.rtc_url,
            "speed": emu.clock.speed,
            "qps_limit": emu.qps_limit(),
            "max_concurrent_tasks": cfg.max_concurrent_tasks,
            "slice_seconds": cfg.slice_seconds,
            "failover_seconds": cfg.failover_seconds,
            "seed": cfg.seed,
        }

    async def put_callbacks(request: Request) -> Any:
        data = await json_body(request)
        emu.set_callback_url(optional(data, "url", str), optional(data, "rtc_url", str))
        return {"url": emu.events.routes.recording_url, "rtc_url": emu.events.routes.rtc_url}

    async def get_callbacks(request: Request) -> Any:
        sid = request.query_params.get("sid")
        if sid is None:
            return deliveries(request, emu.notifier)
        return deliveries(request, emu.notifier, lambda d: d.notice.payload.get("sid") == sid)

    async def channels(request: Request) -> Any:
        return [emu.channel(name) for name in emu.channels.channels]

    async def channel(request: Request) -> Any:
        return emu.channel(request.path_params["cname"])

    async def join(request: Request) -> Any:
        data = await json_body(request)
        uid = optional(data, "uid", int)
        if uid is None or not 0 < uid < 2**32:
            raise ValueError("uid must be an integer in 1..2^32-1")
        cname = request.path_params["cname"]
        emu.join(
            cname,
            uid,
            optional(data, "role", str),
            profile=optional(data, "profile", str),
            publish=optional(data, "publish", bool),
            platform=optional(data, "platform", int) or 7,
        )
        return JSONResponse(emu.channel(cname), 201)

    async def change_user(request: Request) -> Any:
        data = await json_body(request)
        role = optional(data, "role", str)
        if role is None:
            raise ValueError("role is required")
        cname = request.path_params["cname"]
        emu.set_role(cname, request.path_params["uid"], role)
        return emu.channel(cname)

    async def leave(request: Request) -> Any:
        cname = request.path_params["cname"]
        reason = int(request.query_params.get("reason", "1"))
        emu.leave(cname, request.path_params["uid"], reason)
        return emu.channel(cname)

    async def tasks(request: Request) -> Any:
        records = emu.tasks(
            cname=request.query_params.get("cname"), live=query_flag(request, "live")
        )
        return [r.to_json() for r in records]

    async def task(request: Request) -> Any:
        return emu.task(request.path_params["sid"]).to_json()

    async def kill(request: Request) -> Any:
        data = await json_body(request)
        failover = optional(data, "failover", bool)
        window = optional(data, "window", int, float)
        sid = request.path_params["sid"]
        emu.kill(sid, failover=True if failover is None else failover, window=window)
        return emu.task(sid).to_json()

    return [
        *shared_routes(emu, FaultConfig, _clock_json),
        route("/config", config, ["GET"]),
        route("/callbacks", get_callbacks, ["GET"]),
        route("/callbacks", put_callbacks, ["PUT"]),
        route("/channels", channels, ["GET"]),
        route("/channels/{cname:path}/users/{uid:int}", change_user, ["PUT", "PATCH"]),
        route("/channels/{cname:path}/users/{uid:int}", leave, ["DELETE"]),
        route("/channels/{cname:path}/users", join, ["POST"]),
        route("/channels/{cname:path}", channel, ["GET"]),
        route("/tasks", tasks, ["GET"]),
        route("/tasks/{sid}/kill", kill, ["POST"]),
        route("/tasks/{sid}", task, ["GET"]),
    ]


def _clock_json(clock: Clock) -> dict[str, Any]:
    return {
        "now": clock.now(),
        "now_ms": clock.now_ms(),
        "speed": clock.speed,
        "manual": clock.manual,
        "pending_timers": clock.pending,
    }
