"""The composition root of the Cloudflare RealtimeKit emulator, and its in-process interface.

``CloudflareEmulator(config)`` wires the RealtimeKit engine and REST gateway onto the framework's
:class:`Emulator` (clock, fault injector, webhook sender, background work); ``emu.app``
is the ASGI app, and the control API's operations are plain methods (``join``, ``leave``,
``end_meeting``, ``kill``, ``advance``, ``recordings``, ``set_faults``...).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service.emulators.framework.control import ControlError
from service.emulators.framework.emulator import Emulator
from service.emulators.framework.notifier import Notifier

from .config import EmulatorConfig
from .control import control_routes
from .engine import Engine
from .faults import ERRORS, FaultConfig
from .rest import Gateway
from .webhooks import POLICY, Webhook

_ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


def new_private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def private_key_pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


class CloudflareEmulator(Emulator[FaultConfig]):
    """One emulated RealtimeKit app. Deterministic for a ``config.seed`` and inputs (the RSA
    signatures aside: PKCS#1 v1.5 is deterministic, but a fresh key is not)."""

    DRIVER_NAME = "cloudflare-emulator-clock"
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
        if cfg.private_key_pem:
            loaded = serialization.load_pem_private_key(cfg.private_key_pem.encode(), None)
            if not isinstance(loaded, rsa.RSAPrivateKey):
                raise ValueError("private_key_pem must be an RSA private key")
            self.private_key = loaded
        else:
            self.private_key = new_private_key()
        self.public_key_pem = (
            self.private_key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )
        self.notifier: Notifier[Webhook] = self._notifier(http_client, POLICY, "rtk-webhooks")
        self.engine = Engine(cfg, self.clock, self.faults, self.private_key, self.notifier.emit)
        gateway = Gateway(self, cfg, self.engine)
        well_known = Route("/.well-known/webhooks.json", self._well_known, methods=["GET"])
        self._serve(control_routes(self), gateway.handle, _ALL_METHODS, [well_known])

    async def _well_known(self, request: Request) -> Response:
        """Where RealtimeKit publishes its webhook key (§2.3)."""
        data = {"publicKey": self.public_key_pem}
        return JSONResponse({"success": True, "data": data, "message": ""})

    # ---- meetings -------------------------------------------------------------------------

    def join(self, meeting_id: str, peer_id: str | None = None, name: str = "guest") -> str:
        """A participant joins (the first one starts the meeting); returns the peer id."""
        self.wake()
        self.clock.run_due()
        return self.engine.join(meeting_id, peer_id, name)

    def leave(self, meeting_id: str, peer_id: str) -> None:
        """A participant leaves (the last one ends the meeting: ``ALL_PARTICIPANTS_LEFT``)."""
        self.clock.run_due()
        self.engine.leave(meeting_id, peer_id)

    def end_meeting(self, meeting_id: str) -> None:
        """The host ends the meeting for everyone (``HOST_ENDED_MEETING``)."""
        self.clock.run_due()
        self.engine.end_meeting(meeting_id)

    def meeting(self, meeting_id: str) -> dict[str, Any]:
        meeting = self.engine.meetings.get(meeting_id)
        if meeting is None:
            raise ControlError(404, f"no meeting {meeting_id}")
        ids = [r.id for r in self.engine.recordings.values() if r.meeting_id == meeting_id]
        return {
            **meeting.to_json(),
            "participants": sorted(meeting.participants),
            "recordings": ids,
        }

    # ---- recordings -----------------------------------------------------------------------

    def kill(self, recording_id: str) -> None:
        """The recorder dies: the recording ends ``ERRORED`` (``INTERNAL_ERROR``)."""
        self.clock.run_due()
        self.engine.kill(recording_id)

    def recordings(
        self, *, meeting_id: str | None = None, live: bool | None = None
    ) -> list[dict[str, Any]]:
        """Every recording ever started (REST shape plus ``meeting_id``), oldest first."""
        self.clock.run_due()
        found = [
            r
            for r in self.engine.recordings.values()
            if (meeting_id is None or r.meeting_id == meeting_id)
            and (live is None or r.active == live)
        ]
        return [{**r.to_rest(), "meeting_id": r.meeting_id} for r in found]

    def recording(self, recording_id: str) -> dict[str, Any]:
        self.clock.run_due()
        found = self.engine.recordings.get(recording_id)
        if found is None:
            raise ControlError(404, f"no recording {recording_id}")
        return {**found.to_rest(), "meeting_id": found.meeting_id}

    def set_webhook_url(self, url: str | None) -> None:
        self.engine.webhook_url = url

    def stats_json(self) -> dict[str, Any]:
        live = sum(1 for r in self.engine.recordings.values() if r.active)
        return {
            **self.stats.to_json(),
            "qps_limit": self.qps_limit(),
            "recordings": {"live": live, "total": len(self.engine.recordings)},
            "webhooks": dict(self.notifier.stats),
        }
