"""``recctl demo [--keep]``: the whole product on this machine, with no credentials.

It serves the playground (:mod:`service.commands.playground`: the Agora and Cloudflare
emulators, an S3 API server and the service on loopback, a fresh SQLite file), declares rooms
through the API, has users join, kills a recorder of each provider, lets the service heal them,
stops one room's recording, follows it to ready, downloads and archives it, shows the catalog,
and tells the story from the event log. It ends by itself; ``--keep`` leaves everything running
for exploring, until Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import click
import httpx

from reconcilers.events import Event
from reconcilers.projections import PROJECTIONS
from service.commands.common import UserError
from service.commands.playground import playground, recctl_command
from service.inventory import room_index
from service.store import open_store

TENANT = "demo"
CLOUDFLARE_ROOM = "design-review"
MEETING = "bbb0a1c2-demo-meeting"
WAIT_SECONDS = 60.0
ROOMS: dict[str, dict[str, Any]] = {
    "standup": {"mode": "mix", "options": {"recordingConfig": {"maxIdleTime": 30}}},
    "lecture": {
        "mode": "individual",
        "options": {"recordingConfig": {"maxIdleTime": 30, "subscribeUidGroup": 0}},
    },
    "townhall": {"mode": "mix", "options": {"recordingConfig": {"maxIdleTime": 30}}},
}


@dataclass
class Demo:
    """The running pieces, and the steps of the story."""

    api: httpx.AsyncClient
    emulator: httpx.AsyncClient
    cloudflare: httpx.AsyncClient
    out: TextIO
    lecture_id: str = ""

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

    async def cloudflare_live(self, meeting: str) -> list[dict[str, Any]]:
        response = await self.cloudflare.get(
            "/_emulator/recordings", params={"meeting_id": meeting, "live": "true"}
        )
        response.raise_for_status()
        found: list[dict[str, Any]] = response.json()
        return found

    async def run(self) -> dict[str, float]:
        figures: dict[str, float] = {}
        await self.cloudflare.post(
            f"/_emulator/meetings/{MEETING}/participants", json={"peer_id": "p1"}
        )
        await self.declare(
            CLOUDFLARE_ROOM, state="recording", provider="cloudflare", channel=MEETING, mode="mix"
        )
        self.say(f"declared {CLOUDFLARE_ROOM} on Cloudflare RealtimeKit (meeting {MEETING})")
        self.say("users join 'standup' (11, 12) and 'lecture' (21); nobody is in 'townhall' yet")
        for channel, uid in (("standup", 11), ("standup", 12), ("lecture", 21)):
            await self.join(channel, uid)
        for room, spec in ROOMS.items():
            if room == "lecture":  # through the recordings API our users already have
                started = await self.api.post(f"/api/v1/rooms/{room}/recordings/start", json=spec)
                started.raise_for_status()
                self.lecture_id = started.json()["data"]["id"]
            else:
                await self.declare(room, state="recording", **spec)
        self.say(
            "declared standup and townhall (PUT /v1/rooms/.../recording) and started lecture "
            "(POST /api/v1/rooms/lecture/recordings/start)"
        )

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

        figures["cloudflare_recording_s"] = await self.until(
            f"{CLOUDFLARE_ROOM} recording", lambda: recording(CLOUDFLARE_ROOM)
        )
        (cf_victim,) = await self.cloudflare_live(MEETING)
        (
            await self.cloudflare.post(f"/_emulator/recordings/{cf_victim['id']}/kill")
        ).raise_for_status()
        self.say(f"killed {CLOUDFLARE_ROOM}'s Cloudflare recording {cf_victim['id'][:8]} (ERRORED)")

        async def cf_healed() -> bool:
            sid = await self.recording_sid(CLOUDFLARE_ROOM)
            return sid is not None and sid != cf_victim["id"]

        figures["cloudflare_heal_s"] = await self.until(f"{CLOUDFLARE_ROOM} healed", cf_healed)
        self.say(
            f"healed: {CLOUDFLARE_ROOM} records again after {figures['cloudflare_heal_s']:.2f}s"
        )

        (await self.api.post("/api/v1/rooms/lecture/recordings/stop")).raise_for_status()

        async def lecture_stopped() -> bool:
            return not await self.live_tasks("lecture")

        figures["stop_s"] = await self.until("lecture stopped", lecture_stopped)
        self.say(f"stopped lecture's recording: its recorder left after {figures['stop_s']:.2f}s")

        async def lecture_ready() -> bool:
            found = await self.api.get(f"/api/v1/recordings/{self.lecture_id}")
            return bool(found.json()["data"]["status"] == "ready")

        figures["ready_s"] = await self.until("lecture's recording ready", lecture_ready)
        self.say(
            f"lecture's files are in the bucket (S3 API on loopback): its recording is ready "
            f"{figures['ready_s']:.2f}s later"
        )
        download = await self.api.get(f"/api/v1/recordings/{self.lecture_id}/download")
        download.raise_for_status()
        url = download.json()["download_url"]
        async with httpx.AsyncClient(timeout=10) as http:
            fetched = await http.get(url)
        fetched.raise_for_status()
        self.say(f"downloaded {len(fetched.content)} bytes from its presigned URL:")
        self.say(f"  {url.split('?')[0]}?X-Amz-...")
        archived = await self.api.post(f"/api/v1/recordings/{self.lecture_id}/archive")
        archived.raise_for_status()
        self.say(f"archived it: {archived.json()['data']['status']} (storage class GLACIER)")
        catalog = (await self.api.get("/api/v1/recordings")).json()
        self.say("the recordings catalog (GET /api/v1/recordings):")
        for item in catalog["data"]:
            self.say(f"  {item['room_id']:<14} {item['status']:<11} {item['id']}")
        return figures


def narrate(
    event: Event, start: float, rooms: Mapping[str, list[str]] | None = None
) -> str | None:
    """One line of the story for the events a person cares about; ``None`` for the rest.
    ``rooms``: the rooms of each channel key (``provider/channel``), which name the room of a
    provider's event (stored under its channel: a Cloudflare meeting id says little)."""
    p = event.payload
    when = f"+{(event.received_at.timestamp() - start):6.2f}s"
    owners = (rooms or {}).get(f"{event.source}/{event.room}", [])
    room_id = owners[0] if len(owners) == 1 else event.room
    room = (room_id or "-").removeprefix(f"{TENANT}/")[:13]
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
    elif event.type == "cloudflare.recording.statusUpdate":
        recording = p.get("recording", {})
        text = f"Cloudflare: recording {str(recording.get('id'))[:8]} {recording.get('status')}"
    elif event.type in ("agora.session_exit", "agora.recorder_leave", "agora.session_failover"):
        text = f"Agora: {event.type.removeprefix('agora.')} sid {str(event.session)[:8]}"
    return None if text is None else f"  {when}  {room:<13} {text}"


async def demo(db: Path, keep: bool, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    started = time.time()
    async with (
        playground(db, tenant=TENANT) as world,
        httpx.AsyncClient(
            base_url=world.service_url,
            headers={"Authorization": f"Bearer {world.token}"},
            timeout=10,
        ) as api,
        httpx.AsyncClient(base_url=world.agora_url, timeout=10) as emulator_client,
        httpx.AsyncClient(base_url=world.cloudflare_url, timeout=10) as cloudflare_client,
    ):
        out.write(
            f"recctl demo: Agora emulator {world.agora_url}, Cloudflare emulator "
            f"{world.cloudflare_url}, S3 API {world.s3_url}, service {world.service_url}, "
            f"event log {db}\n"
        )
        figures = await Demo(api, emulator_client, cloudflare_client, out).run()
        out.write("\nThe story, from the event log:\n")
        store = await open_store(world.database_url, PROJECTIONS)
        try:
            _, by_channel = await room_index(store)
            for event in await store.read_log(0, None, 100_000):
                line = narrate(event, started, by_channel)
                if line:
                    out.write(line + "\n")
        finally:
            await store.close()
        recctl = recctl_command()
        env = f"DATABASE_URL={world.database_url}"
        out.write(
            f"\nHealed a killed Agora recorder in {figures['heal_s']:.2f}s and a killed "
            f"Cloudflare recording in {figures['cloudflare_heal_s']:.2f}s; "
            "nothing was started twice.\n"
            "Explore the log and the rooms (the service need not run):\n"
            f"  {env} {recctl} events --room {TENANT}/standup\n"
            f"  {env} {recctl} status\n"
            f"  {env} {recctl} reconcile --dry-run\n"
        )
        if keep:
            out.write(
                f"\nStill running (Ctrl-C to stop). Try:\n"
                f"  curl -H 'Authorization: Bearer {world.token}' {world.service_url}/v1/rooms\n"
                f"  curl '{world.agora_url}/_emulator/tasks?live=true'\n"
                f"or run `{recctl} dev` for a playground with its curl lines.\n"
            )
            out.flush()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.Event().wait()
    return 0


@click.command()
@click.option("--keep", is_flag=True, help="leave the servers running (Ctrl-C stops them)")
@click.option(
    "--db",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("demo.db"),
    show_default=True,
    help="event log file (made afresh)",
)
def demo_command(keep: bool, db: Path) -> int:
    """Run the whole product against the emulators, on loopback, with no credentials."""
    from service.logging import configure_logging

    configure_logging("WARNING")
    try:
        return asyncio.run(demo(db, keep))
    except TimeoutError as exc:
        raise UserError(str(exc)) from None
