"""The composition root of the Agora emulator, and its in-process Python interface.

``AgoraEmulator(config)`` wires the engine, the REST and control surfaces onto the framework's
:class:`Emulator` (clock, faults, notifier, background work); ``emu.app`` is the ASGI app, and
the same operations as the control API are plain methods (``join``, ``leave``, ``kill``,
``advance``, ``tasks``, ``set_faults``...). Background work starts with the app's lifespan, or
lazily on the first request or notification when the app is mounted without one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from service.emulators.framework.control import ControlError
from service.emulators.framework.emulator import Emulator
from service.emulators.framework.notifier import Notifier, RetryPolicy

from .api import AgoraGateway
from .channels import LEAVE_QUIT, ChannelRegistry
from .config import EmulatorConfig
from .control import control_routes
from .engine import RecordingEngine
from .events import EventSink, Notice, Routes
from .faults import ERRORS, FaultConfig
from .ids import IdSource
from .model import Task, TaskRecord
from .rest import CloudRecordingApi

_ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


class AgoraEmulator(Emulator[FaultConfig]):
    """One emulated Agora project. Deterministic for a given ``config.seed`` and inputs."""

    DRIVER_NAME = "agora-emulator-clock"
    ERRORS = ERRORS

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        *,
        http_client: httpx.AsyncClient | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        cfg = config or EmulatorConfig()
        super().__init__(cfg, cfg.faults, monotonic=monotonic)
        self.config = cfg
        self.ids = IdSource(cfg.seed, cfg.app_id)
        # Agora resends anything but a 200
        # (docs/providers/agora.md#9-signatures-retries-allowlist).
        self.notifier: Notifier[Notice] = self._notifier(
            http_client, RetryPolicy(), "agora-ncs", redundant=cfg.redundant_callbacks
        )
        routes = Routes(
            recording_url=cfg.callback_url,
            recording_secret=cfg.ncs_secret,
            rtc_url=cfg.rtc_callback_url,
            rtc_secret=cfg.rtc_ncs_secret or cfg.ncs_secret,
            rtc_enabled=cfg.rtc_events,
        )
        self.events = EventSink(routes, self.clock, self.ids, self.notifier.emit)
        self.channels = ChannelRegistry(self.clock, self.events)
        self.engine = RecordingEngine(
            cfg, self.clock, self.ids, self.faults, self.events, self.channels
        )
        self.rest = CloudRecordingApi(cfg, self.clock, self.ids, self.engine)
        gateway = AgoraGateway(self, cfg, self.rest)
        self._serve(control_routes(self), gateway.handle, _ALL_METHODS)

    # ---- channels -------------------------------------------------------------------------

    def join(
        self,
        cname: str,
        uid: int,
        role: str | None = None,
        *,
        profile: str | None = None,
        publish: bool | None = None,
        platform: int = 7,
    ) -> None:
        """A user joins ``cname``. ``role`` host/audience implies the live profile; without
        it the profile of the users already there (else ``config.default_profile``) is used."""
        self.wake()
        self.clock.run_due()
        self.engine.join_user(
            cname, uid, role=role, profile=profile, publish=publish, platform=platform
        )

    def leave(self, cname: str, uid: int, reason: int = LEAVE_QUIT) -> None:
        self.clock.run_due()
        self.engine.leave_user(cname, uid, reason)

    def set_role(self, cname: str, uid: int, role: str) -> None:
        self.clock.run_due()
        self.engine.set_role(cname, uid, role)

    def channel(self, cname: str) -> dict[str, Any]:
        channel = self.channels.channels.get(cname)
        members = [] if channel is None else list(channel.members.values())
        return {
            "cname": cname,
            "members": [
                {
                    "uid": p.uid,
                    "profile": p.profile,
                    "role": p.role,
                    "publish": p.publish,
                    "platform": p.platform,
                    "recorder_sid": p.recorder_sid,
                }
                for p in members
            ],
            "tasks": sorted(channel.tasks) if channel is not None else [],
        }

    # ---- tasks ----------------------------------------------------------------------------

    def kill(self, sid: str, *, failover: bool = True, window: float | None = None) -> None:
        """Kill a task's recorder: fail over within ``window`` (default ``failover_seconds``)
        or, with ``failover=False`` or after ``max_failovers``, end it abnormally for good."""
        self.clock.run_due()
        task = self.engine.tasks.get(sid)
        if task is None:
            raise ControlError(404, f"no task {sid}")
        self.engine.kill(task, failover=failover, window=window)

    def tasks(self, *, cname: str | None = None, live: bool | None = None) -> list[TaskRecord]:
        """Every task ever started (ended ones included), oldest first."""
        self.clock.run_due()
        now = self.clock.now()
        # Filtered before building records: a benchmark polls one room of 10,000 every few ms.
        tasks: list[Task] = list(self.engine.tasks.values())
        if cname is not None:
            tasks = [t for t in tasks if t.cname == cname]
        if live is not None:
            tasks = [t for t in tasks if (t.ended_at is None) == live]  # as TaskRecord.live
        return [t.record(now) for t in tasks]

    def task(self, sid: str) -> TaskRecord:
        self.clock.run_due()
        task = self.engine.tasks.get(sid)
        if task is None:
            raise ControlError(404, f"no task {sid}")
        return task.record(self.clock.now())

    def set_callback_url(self, url: str | None, rtc_url: str | None = None) -> None:
        self.events.routes.recording_url = url
        self.events.routes.rtc_url = rtc_url

    def stats_json(self) -> dict[str, Any]:
        engine = self.engine
        return {
            **self.stats.to_json(),
            "qps_limit": self.qps_limit(),
            "tasks": {
                "live": engine.live,
                "total": len(engine.tasks),
                "recording": sum(  # live and recording (status 4/5): a benchmark's progress
                    1 for t in engine.tasks.values() if t.ended_at is None and t.status in (4, 5)
                ),
            },
            "callbacks": dict(self.notifier.stats),
        }
