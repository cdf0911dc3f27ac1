"""``recctl demo [--keep]``: the whole product on this machine, with no credentials.

It serves the Agora emulator and the service on loopback (real HTTP, a fresh SQLite file),
declares rooms through the API, has users join, kills a recorder, lets the service heal it,
declares one room stopped, and tells the story from the event log. It ends by itself; ``--keep``
leaves both servers running for exploring, until Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import httpx
import uvicorn
from starlette.types import ASGIApp

from reconcilers.events import Event
from reconcilers.projections import PROJECTIONS
from service.config import Settings
from service.store import open_store

TENANT = "demo"
WAIT_SECONDS = 60.0
ROOMS: dict[str, dict[str, Any]] = {
    "standup": {"mode": "mix", "options": {"recordingConfig": {"maxIdleTime": 30}}},
    "lecture": {
        "mode": "individual",
        "options": {"recordingConfig": {"maxIdleTime": 30, "subscribeUidGroup": 0}},
    },
    "townhall": {"mode": "mix", "options": {"recordingConfig": {"maxIdleTime": 30}}},
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def _serve(app: ASGIApp, port: int) -> AsyncIterator[str]:
    """Serve ``app`` on loopback until the block ends; yields its base URL once it listens."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()  # raises what stopped it
                raise RuntimeError(f"server on port {port} stopped during start-up")
            await asyncio.sleep(0.02)  # polling start-up, bounded by the server's own checks
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@dataclass
class Demo:
    """The running pieces, and the steps of the story."""

    api: httpx.AsyncClient
    emulator: httpx.AsyncClient
    out: TextIO

    def say(self, text: str) -> None:
        self.out.write(f"  {text}\n")
        self.out.flush()

    async def declare(self, room: str, **spec: Any) -> None:
        response = await self.api.put(f"/v1/rooms/{room}/recording", json=spec)
        response.raise_for_status()

    async def join(self, channel: str, uid: int) -> None:
        response = await self.emulator.post(
            f"/_emulator/channels/{channel}/users", json={"uid": uid}
        )
        response.raise_for_status()

    async def live_tasks(self, channel: str) -> list[dict[str, Any]]:
        response = await self.emulator.get("/_emulator/tasks", params={"cname": channel})
        response.raise_for_status()
        return [t for t in response.json() if t["live"]]

    async def recording_sid(self, room: str) -> str | None:
        """The sid of the room's session when its ``Recording`` condition is true."""
        view = (await self.api.get(f"/v1/rooms/{room}/recording")).json()
        recording = next(c for c in view["conditions"] if c["type"] == "Recording")
        session = view["observed"].get("session") or {}
        return session.get("sid") if recording["status"] == "True" else None

    async def until(self, what: str, check: Callable[[], Awaitable[bool]]) -> float:
        """Wait until ``check()`` holds; returns the seconds it took."""
        started = time.monotonic()
        while not await check():
            if time.monotonic() - started > WAIT_SECONDS:
                raise TimeoutError(f"demo: {what} did not happen within {WAIT_SECONDS:.0f}s")
            await asyncio.sleep(0.05)  # polling the API, as a user would
        return time.monotonic() - started

    async def run(self) -> dict[str, float]:
        figures: dict[str, float] = {}
        self.say("users join 'standup' (11, 12) and 'lecture' (21); nobody is in 'townhall' yet")
        for channel, uid in (("standup", 11), ("standup", 12), ("lecture", 21)):
            await self.join(channel, uid)
        for room, spec in ROOMS.items():
            await self.declare(room, state="recording", **spec)
        self.say(f"declared {', '.join(ROOMS)}: state=recording")

        async def recording(*rooms: str) -> bool:
            return all([await self.recording_sid(r) for r in rooms])

        figures["standup_lecture_recording_s"] = await self.until(
            "standup and lecture recording", lambda: recording("standup", "lecture")
        )
        self.say(
            f"standup and lecture recording after {figures['standup_lecture_recording_s']:.1f}s"
        )
        await self.join("townhall", 31)
        figures["townhall_after_join_s"] = await self.until(
            "townhall recording", lambda: recording("townhall")
        )
        self.say(
            f"user 31 joined townhall: recording {figures['townhall_after_join_s']:.1f}s later"
        )

        (victim,) = await self.live_tasks("standup")
        kill = await self.emulator.post(
            f"/_emulator/tasks/{victim['sid']}/kill", json={"failover": False}
        )
        kill.raise_for_status()
        self.say(f"killed standup's recorder {victim['sid'][:8]} (no failover: it is gone)")

        async def healed() -> bool:
            sid = await self.recording_sid("standup")
            return sid is not None and sid != victim["sid"]

        figures["heal_s"] = await self.until("standup healed", healed)
        self.say(
            f"healed: standup records again after {figures['heal_s']:.2f}s, with the spare uid"
        )

        await self.declare("lecture", state="stopped", **ROOMS["lecture"])

        async def lecture_stopped() -> bool:
            return not await self.live_tasks("lecture")

        figures["stop_s"] = await self.until("lecture stopped", lecture_stopped)
        self.say(f"declared lecture stopped: its recorder left after {figures['stop_s']:.2f}s")
        return figures


def narrate(event: Event, start: float) -> str | None:
    """One line of the story for the events a person cares about; ``None`` for the rest."""
    p = event.payload
    when = f"+{(event.received_at.timestamp() - start):6.2f}s"
    room = (event.room or "-").removeprefix(f"{TENANT}/")
    text: str | None = None
    if event.type == "room.desired":
        spec = p.get("spec", {})
        text = f"API: declared {spec.get('state')} ({spec.get('mode')} mode)"
    elif event.type == "result.start" and p.get("sid"):
        text = (
            f"reconciler: started segment {p.get('segment')} sid {p['sid'][:8]} uid {p.get('uid')}"
        )
    elif event.type == "result.start":
        text = f"reconciler: start failed ({p.get('outcome')} {p.get('code')})"
    elif event.type == "session.adopted":
        text = f"reconciler: adopted sid {str(p.get('sid'))[:8]}"
    elif event.type == "result.stop":
        text = f"reconciler: stopped sid {str(p.get('sid'))[:8]} ({p.get('reason')})"
    elif event.type in ("agora.user_join", "agora.user_leave"):
        verb = "joined" if event.type.endswith("join") else "left"
        user = p.get("payload", {})
        who = "recorder" if user.get("clientType") == 10 else "user"
        text = f"Agora: {who} {user.get('uid')} {verb}"
    elif event.type in ("agora.session_exit", "agora.recorder_leave", "agora.session_failover"):
        text = f"Agora: {event.type.removeprefix('agora.')} sid {str(event.session)[:8]}"
    return None if text is None else f"  {when}  {room:<10} {text}"


async def demo(db: Path, keep: bool, out: TextIO | None = None) -> int:
    from service.emulators.agora import AgoraEmulator, EmulatorConfig
    from service.runtime import build_app

    out = out or sys.stdout
    emulator_port, service_port = _free_port(), _free_port()
    ncs_secret, key, secret, token, s3_key, s3_secret = (secrets.token_hex(16) for _ in range(6))
    emulator = AgoraEmulator(
        EmulatorConfig(
            customer_key=key,
            customer_secret=secret,
            ncs_secret=ncs_secret,
            callback_url=f"http://127.0.0.1:{service_port}/webhooks/agora",
            seed=1,
        )
    )
    settings = Settings.from_env(
        {},
        database_url=f"sqlite:///{db}",
        log_level="WARNING",
        agora_app_id=emulator.config.app_id,
        agora_customer_key=key,
        agora_customer_secret=secret,
        agora_ncs_secret=ncs_secret,
        agora_api_base_url=f"http://127.0.0.1:{emulator_port}",
        api_tokens=f"{token}:{TENANT}",
        storage_profiles={
            "default": {
                "kind": "s3",
                "bucket": "demo-recordings",
                "access_key_id": s3_key,
                "secret_access_key": s3_secret,
            }
        },
        query_interval_seconds=10,
    )
    out.write(
        f"recctl demo: Agora emulator on :{emulator_port}, service on :{service_port}, "
        f"event log {db}\n"
    )
    started = time.time()
    async with (
        _serve(emulator.app, emulator_port) as emulator_url,
        _serve(build_app(settings), service_port) as service_url,
        httpx.AsyncClient(
            base_url=service_url, headers={"Authorization": f"Bearer {token}"}, timeout=10
        ) as api,
        httpx.AsyncClient(base_url=emulator_url, timeout=10) as emulator_client,
    ):
        figures = await Demo(api, emulator_client, out).run()
        out.write("\nThe story, from the event log:\n")
        store = await open_store(settings.database_url, PROJECTIONS)
        try:
            for event in await store.read_log(0, None, 100_000):
                line = narrate(event, started)
                if line:
                    out.write(line + "\n")
        finally:
            await store.close()
        out.write(
            f"\nHealed a killed recorder in {figures['heal_s']:.2f}s; "
            "nothing was started twice.\n"
            "Explore the log and the rooms (the service need not run):\n"
            f"  DATABASE_URL=sqlite:///{db} recctl events --room {TENANT}/standup\n"
            f"  DATABASE_URL=sqlite:///{db} recctl status\n"
            f"  DATABASE_URL=sqlite:///{db} recctl reconcile --dry-run\n"
        )
        if keep:
            out.write(
                f"\nStill running (Ctrl-C to stop). Try:\n"
                f"  curl -H 'Authorization: Bearer {token}' {service_url}/v1/rooms\n"
                f"  curl {emulator_url}/_emulator/tasks?live=true\n"
            )
            out.flush()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.Event().wait()
    return 0


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("demo", help="run the whole product against the emulator")
    parser.add_argument("--keep", action="store_true", help="leave the servers running")
    parser.add_argument("--db", type=Path, default=Path("demo.db"), help="event log file")
    parser.set_defaults(handler=_handler)


def _handler(args: argparse.Namespace) -> int:
    from service.logging import configure_logging

    configure_logging("WARNING")
    for suffix in ("", "-wal", "-shm"):  # a fresh log, so that the story is this run's
        Path(f"{args.db}{suffix}").unlink(missing_ok=True)
    try:
        return asyncio.run(demo(args.db, args.keep))
    except TimeoutError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
