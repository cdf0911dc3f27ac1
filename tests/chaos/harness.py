"""One chaos run: the service and the Agora emulator as real processes on 127.0.0.1, a seeded
workload and seeded faults, then the invariants checked from the event log and the emulator's
own records.

A run has two phases. **Chaos** (``chaos_seconds``): rooms' desired state toggles through the
API, users join and leave, recorders are killed (with and without failover), provider faults
(5xx, timeouts, 429 bursts, callbacks dropped / duplicated / delayed / reordered) switch on and
off, and the service is ``kill -9``-ed and restarted at seeded moments. **Quiesce**: faults off,
every channel gets a user, the service runs; we poll until the emulator shows exactly what the
log says is desired, and measure how long that took.

Every decision comes from ``random.Random(seed)``; the emulator's fault streams are seeded too.
Wall-clock timing still varies, so a seed reproduces the workload and faults, not every race.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import sqlite3
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from reconcilers.identity import UidRange
from tests.procs import Server, clean_env, free_port, recctl

NCS_SECRET = "chaos-ncs-secret"
TOKEN = "chaos-api-token-0001"
TENANT = "acme"
#: A second tenant that syncs and reads acme's room names: it must never see anything.
INTRUDER_TOKEN = "chaos-intruder-token"
INTRUDER = "globex"
UIDS = UidRange()
STORAGE = {
    "default": {
        "kind": "s3",
        "bucket": "chaos",
        "region": "us-east-1",
        "access_key_id": "AKIACHAOS",
        "secret_access_key": "chaos-storage-secret",
    }
}
SPEC_OPTIONS = {"recordingConfig": {"maxIdleTime": 30}}
INDIVIDUAL_OPTIONS = {"recordingConfig": {"maxIdleTime": 30, "subscribeUidGroup": 0}}

#: Named fault profiles the workload switches between (FaultConfig JSON for PATCH /faults).
FAULT_PROFILES: dict[str, dict[str, Any]] = {
    "5xx": {"error_rates": {"*": 0.3}},
    "timeouts": {"timeout_rates": {"*": 0.15}, "hang_seconds": 2.0},
    "429-burst": {"qps_limit": 2},
    "callbacks-dropped": {"callback_drop_rate": 0.5},
    "callbacks-duplicated": {"callback_duplicate_rate": 0.5},
    "callbacks-reordered": {"callback_reorder_rate": 0.5},
    "callbacks-delayed": {"callback_delay_rate": 0.5, "callback_delay": [0.5, 3.0]},
    "latency": {"latency": [0.05, 0.4]},
}
NO_FAULTS: dict[str, Any] = {"side_effect_rate": 0.5}
#: Scenarios the workload plays out over a few seconds (issue 20): every start errors but is
#: carried out for 2.5 s, then the room is stopped (the soak's double room); and a storm of
#: clients that send half a request body and hang up.
SCENARIOS = ("start-landed-then-stop", "disconnect-storm")
LANDED_START: dict[str, Any] = {"error_rates": {"start": 1.0}, "side_effect_rate": 1.0}


@dataclass(frozen=True)
class ChaosConfig:
    """One run's shape. Service timings are short so that convergence shows in seconds."""

    seed: int
    rooms: int = 4
    chaos_seconds: float = 15.0
    converge_limit: float = 75.0
    service_kills: int = 2
    query_interval: float = 2.0
    resync_interval: float = 2.0
    stall_threshold: float = 8.0
    failover_window: float = 4.0
    emulator_failover: float = 2.0
    speed: float = 1.0
    #: A PUT that asks for a recording may also switch the mode (mix <-> individual): spec
    #: changes roll over make-before-break under faults (issue 21). Off by default, so that
    #: each seed's workload stays the one its recorded runs had; its own random stream.
    spec_changes: bool = False

    @property
    def orphan_bound(self) -> float:
        """Invariant 3: 2 x the query interval plus the failover window."""
        return 2 * self.query_interval + self.failover_window

    @property
    def converge_target(self) -> float:
        """The issue's target: converged within 60 s after faults stop and the last restart."""
        return 60.0


@dataclass
class RunReport:
    seed: int
    acked_api: int = 0
    acked_webhooks: int = 0
    lost: list[str] = field(default_factory=list)
    doubles: list[str] = field(default_factory=list)
    overlap_max_s: float = 0.0
    rollover_overlaps: int = 0
    leaks: list[str] = field(default_factory=list)
    storms: int = 0
    orphan_max_s: float = 0.0
    orphans_over_bound: list[str] = field(default_factory=list)
    converged: bool = False
    convergence_s: float | None = None
    convergence_problem: str = ""
    replay_ok: bool = False
    replay_diff: list[str] = field(default_factory=list)
    api_5xx: int = 0
    service_kills: int = 0
    recorder_kills: int = 0
    fault_profiles: list[str] = field(default_factory=list)
    tasks: int = 0
    duration_s: float = 0.0
    error: str = ""

    def failures(self, cfg: ChaosConfig) -> list[str]:
        out: list[str] = []
        if self.error:
            out.append(f"error: {self.error}")
        if self.lost:
            out.append(f"(1) {len(self.lost)} acknowledged events lost: {self.lost[:5]}")
        if not self.converged:
            out.append(f"(2) not converged: {self.convergence_problem}")
        elif self.convergence_s is not None and self.convergence_s > cfg.converge_target:
            out.append(f"(2) converged in {self.convergence_s:.1f}s > {cfg.converge_target}s")
        if self.doubles:
            out.append(f"(3) double sessions: {self.doubles[:5]}")
        if self.leaks:
            out.append(f"(5) another tenant saw acme's recordings: {self.leaks[:5]}")
        if self.orphans_over_bound:
            out.append(f"(3) orphans over {cfg.orphan_bound}s: {self.orphans_over_bound[:5]}")
        if not self.replay_ok:
            out.append(f"(4) replay differs: {self.replay_diff[:5]}")
        if self.api_5xx:
            out.append(f"{self.api_5xx} API answers were 5xx")
        return out

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Ack:
    room: str
    idem: str
    generation: int
    state: str


class ChaosRun:
    """Owns the processes of one run; :meth:`execute` returns the report, never raises."""

    def __init__(self, cfg: ChaosConfig, workdir: Path) -> None:
        self.cfg = cfg
        self.dir = workdir
        self.rng = random.Random(cfg.seed)
        self.modes = random.Random(cfg.seed ^ 0x5EC)  # apart: the workload's stream unchanged
        self.report = RunReport(cfg.seed)
        self.db = workdir / "chaos.db"
        self.svc_port = free_port()
        self.emu_port = free_port()
        self.emu_url = f"http://127.0.0.1:{self.emu_port}"
        self.svc_url = f"http://127.0.0.1:{self.svc_port}"
        self.env = clean_env(
            DATABASE_URL=f"sqlite:///{self.db}",
            LOG_LEVEL="INFO",
            AGORA_NCS_SECRET=NCS_SECRET,
            AGORA_APP_ID="emulator-app",
            AGORA_CUSTOMER_KEY="emulator-key",
            AGORA_CUSTOMER_SECRET="emulator-secret",
            AGORA_API_BASE_URL=self.emu_url,
            AGORA_RATE_LIMIT_QPS="20",
            API_TOKENS=f"{TOKEN}:{TENANT},{INTRUDER_TOKEN}:{INTRUDER}",
            STORAGE_PROFILES=json.dumps(STORAGE),
            QUERY_INTERVAL_SECONDS=str(cfg.query_interval),
            RESYNC_INTERVAL_SECONDS=str(cfg.resync_interval),
            STALL_THRESHOLD_SECONDS=str(cfg.stall_threshold),
            FAILOVER_WINDOW_SECONDS=str(cfg.failover_window),
        )
        self.rooms = [f"room-{i}" for i in range(cfg.rooms)]
        self.users: dict[str, set[int]] = {r: set() for r in self.rooms}
        self.acks: list[_Ack] = []
        self.down: list[tuple[float, float]] = []  # real-time intervals the service was down
        self.emulator: Server | None = None
        self.service: Server | None = None
        self.emu_offset = 0.0  # emulated - real seconds (speed 1)

    # -- processes ---------------------------------------------------------------------------

    def _start_emulator(self) -> Server:
        cfg = self.cfg
        command = [
            sys.executable,
            "-m",
            "service.cli",
            "emulate",
            "agora",
            "--port",
            str(self.emu_port),
            "--ncs-secret",
            NCS_SECRET,
            "--callback-url",
            f"{self.svc_url}/webhooks/agora",
            "--speed",
            str(cfg.speed),
            "--seed",
            str(cfg.seed),
            "--fault-seed",
            str(cfg.seed),
            "--failover-seconds",
            str(cfg.emulator_failover),
            "--startup-seconds",
            "0.5",
            "--exit-seconds",
            "0.5",
            "--slice-seconds",
            "2",
            "--qps-limit",
            "50",
            "--callback-timeout",
            "2",
            "--callback-retry-delays",
            "0,0.5,1",
            "--side-effect-rate",
            "0.5",
        ]
        return Server.start(command, self.emu_port, self.env, self.dir / "emulator.log")

    def _start_service(self) -> Server:
        command = [sys.executable, "-m", "service.cli", "serve", "--port", str(self.svc_port)]
        return Server.start(command, self.svc_port, self.env, self.dir / "service.log")

    async def _wait_emulator(self, client: httpx.AsyncClient) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.emulator is not None
            if self.emulator.process.poll() is not None:
                raise RuntimeError(f"emulator exited: {self.emulator.log()}")
            with contextlib.suppress(httpx.TransportError):
                r = await client.get(f"{self.emu_url}/_emulator/clock")
                if r.status_code == 200:
                    self.emu_offset = r.json()["now"] - time.time()
                    return
            await asyncio.sleep(0.05)  # polling interval
        raise TimeoutError("emulator not up")

    async def _restart_service(self, down_for: float) -> None:
        assert self.service is not None
        killed_at = time.time()
        self.service.kill9()
        self.report.service_kills += 1
        await asyncio.sleep(down_for)  # the outage itself, not a synchronisation
        self.service = self._start_service()
        await self.service.wait_healthy()
        self.down.append((killed_at, time.time()))

    def _stop_all(self) -> None:
        for server in (self.service, self.emulator):
            if server is not None:
                server.stop()

    # -- the run -----------------------------------------------------------------------------

    async def execute(self) -> RunReport:
        started = time.monotonic()
        try:
            async with self._clients() as (svc, emu):
                await self._run(svc, emu)
        except Exception as exc:
            self.report.error = f"{type(exc).__name__}: {exc}"
        finally:
            self._stop_all()
            self.report.duration_s = round(time.monotonic() - started, 1)
        if not self.report.error:
            try:
                self._check_log()
                self._check_replay()
            except Exception as exc:
                self.report.error = f"{type(exc).__name__}: {exc}"
        return self.report

    @contextlib.asynccontextmanager
    async def _clients(self) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
        async with (
            self._api_client() as svc,
            httpx.AsyncClient(base_url=self.emu_url, timeout=10) as emu,
        ):
            yield svc, emu

    def _api_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKEN}"}

    def _api_client(self) -> httpx.AsyncClient:
        """The workload's API client (several replicas: one that spreads the calls)."""
        return httpx.AsyncClient(base_url=self.svc_url, headers=self._api_headers(), timeout=10)

    async def _run(self, svc: httpx.AsyncClient, emu: httpx.AsyncClient) -> None:
        cfg = self.cfg
        self.emulator = self._start_emulator()
        self.service = self._start_service()
        await self._wait_emulator(emu)
        await self.service.wait_healthy()
        for room in self.rooms:  # everyone starts with a host and a wish to record
            await self._join(emu, room)
            await self._put(svc, room, "recording")

        kill_moments = sorted(
            self.rng.uniform(0.1, 0.9) * cfg.chaos_seconds for _ in range(cfg.service_kills)
        )
        chaos_start = time.monotonic()
        while (elapsed := time.monotonic() - chaos_start) < cfg.chaos_seconds:
            if kill_moments and elapsed >= kill_moments[0]:
                kill_moments.pop(0)
                await self._restart_service(self.rng.uniform(0.1, 1.5))
                continue
            await self._step(svc, emu)
            await asyncio.sleep(self.rng.uniform(0.05, 0.4))  # workload pacing

        for _ in kill_moments:  # a long scenario step ran past a kill's moment: still kill
            await self._restart_service(self.rng.uniform(0.1, 1.5))

        # Quiesce: faults off, the last restart, a user in every channel.
        await emu.put("/_emulator/faults", json=NO_FAULTS)
        await self._restart_service(self.rng.uniform(0.1, 1.0))
        for room in self.rooms:
            if not self.users[room]:
                await self._join(emu, room)
        quiet_since = time.monotonic()
        await self._await_convergence(svc, emu, quiet_since)
        tasks = (await emu.get("/_emulator/tasks")).json()
        self._check_tasks(tasks)
        for room in self.rooms:
            await self._intrude(room)
        deliveries = (await emu.get("/_emulator/callbacks", params={"limit": 100000})).json()
        self.delivered = {
            d["noticeId"]
            for d in deliveries["deliveries"]
            if any(a["status"] == 200 for a in d["attempts"])
        }
        assert self.service is not None
        self.service.stop()  # graceful: the WAL is checkpointed for the checks below

    async def _step(self, svc: httpx.AsyncClient, emu: httpx.AsyncClient) -> None:
        rng = self.rng
        room = rng.choice(self.rooms)
        roll = rng.random()
        if roll < 0.35:
            await self._put(svc, room, rng.choice(["recording", "recording", "stopped"]))
        elif roll < 0.5:
            if self.users[room] and rng.random() < 0.5:
                uid = rng.choice(sorted(self.users[room]))
                r = await emu.delete(f"/_emulator/channels/{room}/users/{uid}")
                if r.status_code == 200:
                    self.users[room].discard(uid)
            else:
                await self._join(emu, room)
        elif roll < 0.7:
            live = await emu.get("/_emulator/tasks", params={"cname": room, "live": "true"})
            ours = [t for t in live.json() if UIDS.contains(t["uid"]) and t["phase"] == "running"]
            if ours:
                victim = rng.choice(ours)
                failover = rng.random() < 0.5
                r = await emu.post(
                    f"/_emulator/tasks/{victim['sid']}/kill", json={"failover": failover}
                )
                if r.status_code == 200:
                    self.report.recorder_kills += 1
        elif roll < 0.85:
            name = rng.choice([*sorted(FAULT_PROFILES), *SCENARIOS])
            self.report.fault_profiles.append(name)
            if name == "start-landed-then-stop":
                await self._landed_start_then_stop(svc, emu, room)
            elif name == "disconnect-storm":
                await self._disconnect_storm()
            else:
                await emu.put("/_emulator/faults", json={**NO_FAULTS, **FAULT_PROFILES[name]})
        elif roll < 0.9:
            await self._intrude(room)
        else:
            await emu.put("/_emulator/faults", json=NO_FAULTS)

    async def _landed_start_then_stop(
        self, svc: httpx.AsyncClient, emu: httpx.AsyncClient, room: str
    ) -> None:
        """The soak's fault: the room (re)starts while every start errors but is carried out,
        for 2.5 s; then the faults stop and so does the room. Its recorder must go within the
        orphan bound, and no second one may appear when it records again."""
        await self._put(svc, room, "stopped")
        await emu.put("/_emulator/faults", json={**NO_FAULTS, **LANDED_START})
        await self._put(svc, room, "recording")
        await asyncio.sleep(2.5)  # the fault's duration, not a synchronisation
        await emu.put("/_emulator/faults", json=NO_FAULTS)
        await self._put(svc, room, "stopped")

    async def _disconnect_storm(self, clients: int = 200) -> None:
        """Clients that send headers and half a body, then hang up (issue 20: each cost a
        traceback on the event loop, and 2,000 of them stalled every other request)."""
        head = (
            b"POST /webhooks/agora HTTP/1.1\r\nHost: chaos\r\n"
            b"Content-Type: application/json\r\nContent-Length: 4096\r\n\r\n"
        ) + b'{"noticeId": "' + b"x" * 1000

        async def one() -> None:
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", self.svc_port)
                writer.write(head)
                with contextlib.suppress(OSError):
                    await writer.drain()
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()

        await asyncio.gather(*(one() for _ in range(clients)))
        self.report.storms += 1

    async def _intrude(self, room: str) -> None:
        """Another tenant syncs one of acme's room names and lists its recordings."""
        headers = {"Authorization": f"Bearer {INTRUDER_TOKEN}"}
        with contextlib.suppress(httpx.TransportError):
            async with httpx.AsyncClient(base_url=self.svc_url, headers=headers, timeout=10) as c:
                await c.post(f"/api/v1/rooms/{room}/recordings/sync")
                await self._intruder_sees(c)

    async def _intruder_sees(self, client: httpx.AsyncClient) -> None:
        r = await client.get("/api/v1/recordings", params={"limit": 100})
        if r.status_code == 200:
            for item in r.json().get("data", []):
                self.report.leaks.append(f"{INTRUDER} lists {item.get('id')}")

    async def _join(self, emu: httpx.AsyncClient, room: str) -> None:
        uid = self.rng.randint(1, 9999)
        r = await emu.post(f"/_emulator/channels/{room}/users", json={"uid": uid})
        if r.status_code == 201:
            self.users[room].add(uid)

    async def _put(self, svc: httpx.AsyncClient, room: str, state: str) -> None:
        idem = f"s{self.cfg.seed}-{len(self.acks)}-{self.rng.getrandbits(32):08x}"
        body: dict[str, Any] = {"state": state, "mode": "mix", "options": SPEC_OPTIONS}
        if self.cfg.spec_changes and state == "recording" and self.modes.random() < 0.5:
            body["mode"] = "individual"  # a rollover when the room records in mix mode
            body["options"] = INDIVIDUAL_OPTIONS
        try:
            r = await svc.put(
                f"/v1/rooms/{room}/recording", json=body, headers={"Idempotency-Key": idem}
            )
        except httpx.TransportError:
            return  # the service is down or died mid-request: not acknowledged
        if r.status_code >= 500:
            self.report.api_5xx += 1
        elif r.status_code in (200, 201):
            self.acks.append(_Ack(room, idem, r.json()["generation"], state))

    # -- invariant 2: convergence ------------------------------------------------------------

    async def _await_convergence(
        self, svc: httpx.AsyncClient, emu: httpx.AsyncClient, since: float
    ) -> None:
        desired: dict[str, str] = {}
        for room in self.rooms:
            r = await svc.get(f"/v1/rooms/{room}/recording")
            desired[room] = r.json()["spec"]["state"] if r.status_code == 200 else "stopped"
        deadline = since + self.cfg.converge_limit
        problem = ""
        while time.monotonic() < deadline:
            live = (await emu.get("/_emulator/tasks", params={"live": "true"})).json()
            problem = _divergence(desired, live)
            if not problem:
                self.report.converged = True
                self.report.convergence_s = round(time.monotonic() - since, 2)
                return
            await asyncio.sleep(0.1)  # polling interval
        self.report.convergence_problem = problem

    # -- invariant 3: doubles and orphans ------------------------------------------------------

    def _check_tasks(self, tasks: list[dict[str, Any]]) -> None:
        now = time.time() + self.emu_offset
        ours = [t for t in tasks if UIDS.contains(t["uid"])]
        self.report.tasks = len(ours)
        by_room: dict[str, list[dict[str, Any]]] = {}
        for t in ours:
            by_room.setdefault(t["cname"], []).append(t)
        self._overlaps: list[tuple[str, dict[str, Any], dict[str, Any], float]] = []
        for room, group in by_room.items():
            group.sort(key=lambda t: t["started_at"])
            for i, a in enumerate(group):
                a_end = _recording_until(a, now)
                for b in group[i + 1 :]:
                    if b["started_at"] >= a_end:
                        continue
                    overlap = min(a_end, _recording_until(b, now)) - b["started_at"]
                    if a["uid"] == b["uid"]:
                        self.report.doubles.append(f"{room} uid {a['uid']}: {a['sid']}+{b['sid']}")
                    elif overlap > 0:
                        # Two of our recorders with different uids recording one room at
                        # once: a double unless the log shows a rollover (``_check_log``).
                        self._overlaps.append((room, a, b, overlap))
                        self.report.overlap_max_s = max(self.report.overlap_max_s, overlap)
        self._tasks = ours
        self._now_emu = now

    def _judge_overlaps(self, rollovers: dict[str, list[float]]) -> None:
        """An overlap is allowed only as a make-before-break rollover: the log has a rollover
        reservation for that room between the older task's start and the newer one's."""
        for room, a, b, overlap in self._overlaps:
            lo = a["started_at"] - self.emu_offset
            hi = b["started_at"] - self.emu_offset + 1.0
            if any(lo <= when <= hi for when in rollovers.get(f"{TENANT}/{room}", [])):
                self.report.rollover_overlaps += 1
                continue
            self.report.doubles.append(
                f"{room} uids {a['uid']}+{b['uid']} recorded together {overlap:.2f}s "
                f"({a['sid']}+{b['sid']}), no rollover"
            )

    def _orphans(self, desire: dict[str, list[tuple[float, str]]]) -> None:
        """For each task of ours, how long it lived after its room stopped wanting a recording,
        counting only time the service was up (a dead service cannot stop anything)."""
        worst = 0.0
        for t in self._tasks:
            room_key = f"{TENANT}/{t['cname']}"
            start = t["started_at"] - self.emu_offset
            end = (t["ended_at"] or self._now_emu) - self.emu_offset
            for off, on in _undesired_intervals(desire.get(room_key, []), end):
                lo, hi = max(start, off), min(end, on)
                if hi <= lo:
                    continue
                lived = (hi - lo) - _overlap_total(self.down, lo, hi)
                worst = max(worst, lived)
                if lived > self.cfg.orphan_bound:
                    self.report.orphans_over_bound.append(
                        f"{t['cname']} {t['sid']} lived {lived:.1f}s after desire went away"
                    )
        self.report.orphan_max_s = round(worst, 2)

    # -- invariant 1 (and the desire timeline), from the log, read-only --------------------

    def _log_rows(self) -> list[tuple[Any, ...]]:
        """The log as (source, dedup_key, room, type, payload JSON, received_at ISO)."""
        with contextlib.closing(sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)) as db:
            columns = "source, dedup_key, room, type, payload, received_at"
            return db.execute(f"SELECT {columns} FROM events ORDER BY seq").fetchall()

    def _check_log(self) -> None:
        rows = self._log_rows()
        keys = {(src, key) for src, key, *_ in rows}
        generations: dict[str, int] = {}
        desire: dict[str, list[tuple[float, str]]] = {}
        rollovers: dict[str, list[float]] = {}
        for src, _, room, etype, payload, received in rows:
            reason = json.loads(payload).get("reason") if etype == "intent.reserve" else None
            if src == "reconciler" and str(reason or "").startswith("rollover"):
                rollovers.setdefault(room, []).append(_iso_to_epoch(received))
            if src == "api" and etype in ("room.desired", "room.deleted"):
                generations[room] = generations.get(room, 0) + 1
                state = json.loads(payload)["spec"]["state"] if etype == "room.desired" else "-"
                when = _iso_to_epoch(received)
                desire.setdefault(room, []).append((when, state))
        for ack in self.acks:
            key = f"{TENANT}/{ack.room}"
            found = ("api", f"{key}|{ack.idem}") in keys
            # a PUT equal to the current spec is answered 200 without a new event: its
            # generation must be in the log instead
            if not found and generations.get(key, 0) < ack.generation:
                self.report.lost.append(f"api {key}|{ack.idem}")
        self.report.acked_api = len(self.acks)
        self.report.acked_webhooks = len(self.delivered)
        for notice in sorted(self.delivered):
            if ("agora", notice) not in keys:
                self.report.lost.append(f"agora {notice}")
        self._orphans(desire)
        self._judge_overlaps(rollovers)

    # -- invariant 4: replay ----------------------------------------------------------------

    def _check_replay(self) -> None:
        copy = self.dir / "replay.db"
        shutil.copyfile(self.db, copy)
        for suffix in ("-wal", "-shm"):
            extra = Path(f"{self.db}{suffix}")
            if extra.exists():
                shutil.copyfile(extra, Path(f"{copy}{suffix}"))
        env = {**self.env, "DATABASE_URL": f"sqlite:///{copy}"}
        done = recctl("replay", env=env)
        if done.returncode != 0:
            self.report.replay_diff.append(f"recctl replay failed: {done.stderr[-500:]}")
            return
        live, rebuilt = _projection_rows(self.db), _projection_rows(copy)
        for key in sorted(set(live) | set(rebuilt)):
            if live.get(key) != rebuilt.get(key):
                self.report.replay_diff.append(f"{key}: {live.get(key)} != {rebuilt.get(key)}")
        self.report.replay_ok = not self.report.replay_diff


def _divergence(desired: dict[str, str], live: list[dict[str, Any]]) -> str:
    """Empty when every desired room has exactly one running task of ours and no other room
    has any; otherwise what differs."""
    for room, state in desired.items():
        ours = [t for t in live if t["cname"] == room and UIDS.contains(t["uid"])]
        if state == "recording":
            running = [t for t in ours if t["phase"] == "running" and t["status"] in (4, 5)]
            if len(ours) != 1 or len(running) != 1:
                return f"{room}: wanted 1 recording task, live {[t['phase'] for t in ours]}"
        elif ours:
            return f"{room}: not desired, {len(ours)} live task(s) of ours"
    return ""


def _recording_until(task: dict[str, Any], now: float) -> float:
    """When a task stopped recording: once stopped (or idle) it only uploads and exits."""
    return float(task.get("exiting_at") or task["ended_at"] or now)


def _undesired_intervals(
    timeline: list[tuple[float, str]], end: float
) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    off: float | None = None
    for when, state in timeline:
        if state != "recording" and off is None:
            off = when
        elif state == "recording" and off is not None:
            out.append((off, when))
            off = None
    if off is not None:
        out.append((off, end))
    return out


def _overlap_total(intervals: list[tuple[float, float]], lo: float, hi: float) -> float:
    return sum(max(0.0, min(hi, b) - max(lo, a)) for a, b in intervals)


def _iso_to_epoch(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text).timestamp()


def _projection_rows(db: Path) -> dict[tuple[str, str], tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        rows = conn.execute("SELECT projection, key, room, data, seq FROM projections").fetchall()
    return {(p, k): (room, json.loads(data), seq) for p, k, room, data, seq in rows}


async def run_seed(cfg: ChaosConfig, workdir: Path) -> RunReport:
    os.makedirs(workdir, exist_ok=True)
    return await ChaosRun(cfg, workdir).execute()
