"""Plumbing of the emulators' control APIs (``/_emulator``): uniform JSON errors and bodies, and
the routes every emulator has (health, clock, faults, stats)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from service.emulators.framework.clock import Clock
from service.emulators.framework.faults import FaultConfig, FaultInjector
from service.emulators.framework.notifier import Delivery, Notifier

Handler = Callable[[Request], Awaitable[Any]]
C = TypeVar("C", bound=FaultConfig)


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


def query_flag(request: Request, name: str) -> bool | None:
    """A yes/no query parameter (``1``/``true``/``yes``), ``None`` when absent."""
    value = request.query_params.get(name)
    return None if value is None else value.lower() in ("1", "true", "yes")


def deliveries(
    request: Request,
    notifier: Notifier[Any],
    keep: Callable[[Delivery[Any]], bool] | None = None,
) -> dict[str, Any]:
    """The sender's counters and its last ``?limit=`` deliveries (default 1000) that ``keep``
    keeps, oldest first: what ``GET /_emulator/callbacks`` (or ``/webhooks``) shows."""
    limit = int(request.query_params.get("limit", "1000"))
    log = [d for d in notifier.log if keep is None or keep(d)]
    return {"stats": dict(notifier.stats), "deliveries": [d.to_json() for d in log[-limit:]]}


def route(path: str, handler: Handler, methods: list[str]) -> Route:
    return Route(path, endpoint(handler), methods=methods)


class Controlled(Protocol[C]):
    """What the shared routes need of an emulator."""

    @property
    def clock(self) -> Clock: ...
    @property
    def faults(self) -> FaultInjector[C]: ...
    def advance(self, seconds: float) -> int: ...
    async def settle(self) -> None: ...
    def set_faults(self, faults: C) -> None: ...
    def stats_json(self) -> dict[str, Any]: ...


def shared_routes(
    emu: Controlled[C], config_type: type[C], clock_json: Callable[[Clock], dict[str, Any]]
) -> list[BaseRoute]:
    """``/health``, ``/clock`` (``clock_json`` is the emulator's view of it), ``/clock/advance``,
    ``/faults`` (PUT replaces, PATCH merges) and ``/stats``, relative to ``/_emulator``."""

    async def health(request: Request) -> Any:
        return {"ok": True, "now": emu.clock.now()}

    async def get_clock(request: Request) -> Any:
        return clock_json(emu.clock)

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
            emu.set_faults(config_type.from_json(data))
        return emu.faults.config.to_json()

    async def stats(request: Request) -> Any:
        return emu.stats_json()

    return [
        route("/health", health, ["GET"]),
        route("/clock", get_clock, ["GET"]),
        route("/clock", put_clock, ["PUT"]),
        route("/clock/advance", advance, ["POST"]),
        route("/faults", get_faults, ["GET"]),
        route("/faults", put_faults, ["PUT", "PATCH"]),
        route("/stats", stats, ["GET"]),
    ]
