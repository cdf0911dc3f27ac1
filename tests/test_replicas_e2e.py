"""Several replicas on one real PostgreSQL, the Agora emulator, all real processes.

``kill -9`` of a replica: its rooms are reconciled again by the others once its leases lapse.
``SIGSTOP`` past the lease: the resumed replica's pass in flight is refused by the fence and
undoes nothing; no room ever has two sessions (checked at the emulator). A webhook received by
one replica wakes the room's owner through NOTIFY. The provider's rate limit holds across all
replicas, measured at the emulator.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from service.replicas.shards import shard_of
from tests.procs import recctl
from tests.replicas_harness import TENANT, Cluster, cluster, double_sessions, until

pytestmark = pytest.mark.slow

LEASE = 3.0


async def rooms_of(c: Cluster, i: int, rooms: list[str]) -> list[str]:
    owned = set((await c.readyz(i))["replica"]["owned_shards"])
    return [r for r in rooms if shard_of(f"{TENANT}/{r}") in owned]


async def kill_tasks(c: Cluster, rooms: list[str]) -> None:
    live = [t for t in await c.tasks(live=True) if t["cname"] in rooms]
    async with c.emu() as emu:
        for t in live:
            answer = await emu.post(f"/_emulator/tasks/{t['sid']}/kill", json={"failover": False})
            assert answer.status_code == 200, answer.text


async def test_kill9_of_a_replica_its_rooms_heal_on_the_others(
    tmp_path: Path, postgres_db: str
) -> None:
    rooms = [f"room-{i}" for i in range(100)]
    async with cluster(
        tmp_path, postgres_db, 3, ingress=2, emulator_flags=("--qps-limit", "100"),
        AGORA_RATE_LIMIT_QPS="100", QUERY_INTERVAL_SECONDS="5", RESYNC_INTERVAL_SECONDS="30",
    ) as c:
        await c.join_all(rooms)
        await c.declare(rooms)
        await until(lambda: _all_recording(c, rooms), 60, "100 rooms recording")
        shares = [len(await rooms_of(c, i, rooms)) for i in range(3)]
        assert sum(shares) == 100 and min(shares) > 0, shares  # shared by all three
        victim = await rooms_of(c, 0, rooms)
        victim_shards = len((await c.readyz(0))["replica"]["owned_shards"])

        c.kill9(0)
        await kill_tasks(c, victim)  # its recordings die with it: nobody may heal them yet
        healed = await until(lambda: _all_recording(c, rooms), 60, "the dead replica's rooms")
        # Taken over after the TTL, then one pass (the rooms restart at the rate limit's pace).
        assert healed <= LEASE + 12, healed
        takeovers = sum([await c.metric(i, "lease_takeovers_total") for i in (1, 2)])
        assert takeovers == victim_shards
        assert await c.all_shards_held(2)
        assert not double_sessions(await c.tasks())


async def _all_recording(c: Cluster, rooms: list[str]) -> bool:
    return len(await c.recording(rooms)) == len(rooms)


async def test_a_paused_replica_resumes_and_undoes_nothing(
    tmp_path: Path, postgres_db: str
) -> None:
    """SIGSTOP while a pass of the replica waits for the provider (an acquire it sent, slowed
    by the emulator); the room is then stopped through another replica and the new owner stops
    it. SIGCONT: the resumed pass's next append is refused by the fence, so it never starts the
    recording it was about to: nothing is undone, no room has two sessions."""
    rooms = [f"room-{i}" for i in range(12)]
    async with cluster(
        tmp_path, postgres_db, 3, ingress=2,
        QUERY_INTERVAL_SECONDS="30", RESYNC_INTERVAL_SECONDS="30", FAILOVER_WINDOW_SECONDS="0",
    ) as c:
        await c.join_all(rooms)
        await c.declare(rooms)
        await until(lambda: _all_recording(c, rooms), 60, "12 rooms recording")
        # The paused one: of the two that do not take the webhooks, the one with more rooms
        # (replica ids are random, and so is how many of 12 rooms each one's shards hold).
        owned = [await rooms_of(c, i, rooms) for i in (0, 1)]
        victim = 0 if len(owned[0]) >= len(owned[1]) else 1
        mine = owned[victim]
        assert mine, f"neither replica 0 nor 1 owns a room of the 12: {owned}"
        room, others = mine[0], mine[1:]

        async with c.emu() as emu:
            acquires = (await c.stats())["requests"].get("acquire", 0)
            await emu.put("/_emulator/faults", json={"latency": [5.0, 5.0]})
            await kill_tasks(c, [room])

            async def acquire_sent() -> bool:
                return (await c.stats())["requests"].get("acquire", 0) > acquires

            await until(acquire_sent, 20, "the owner asks for a new recorder")
            c.pause(victim)  # its acquire is in flight: the answer comes while it is stopped
            await emu.put("/_emulator/faults", json={})
            async with c.api(1 - victim) as api:  # changes made meanwhile, through another
                for r in [room, *others[:2]]:
                    answer = await api.put(
                        f"/v1/rooms/{r}/recording", json={"state": "stopped", "mode": "mix"}
                    )
                    assert answer.status_code in (200, 201), answer.text
            stopped = {room, *others[:2]}
            wanted = [r for r in rooms if r not in stopped]

            async def settled() -> bool:
                live = {t["cname"] for t in await c.tasks(live=True)}
                return not (live & stopped) and len(await c.recording(wanted)) == len(wanted)

            await until(settled, 30, "the new owners stop what was stopped meanwhile")
            starts_before = (await c.stats())["requests"].get("start", 0)

            c.resume(victim)
            await until(
                lambda: _refused(c, victim), 20, "the resumed replica's stale pass is refused"
            )
            await until(lambda: c.all_shards_held(3), 30, "the resumed one back in the rotation")
            await until(settled, 30, "still as desired after the resume")
            stats = await c.stats()
            assert stats["requests"].get("start", 0) == starts_before  # it started nothing
            assert not double_sessions(await c.tasks())
            assert not [t for t in await c.tasks(live=True) if t["cname"] == room]


async def _refused(c: Cluster, i: int) -> bool:
    return await c.metric(i, "stale_fence_refusals_total", where="fence") >= 1


async def test_a_webhook_to_one_replica_wakes_the_rooms_owner(
    tmp_path: Path, postgres_db: str
) -> None:
    """No resync and no query for a minute: only the NOTIFY from the replica that got the
    webhook can make the owner heal the room this soon."""
    rooms = [f"room-{i}" for i in range(8)]
    async with cluster(
        tmp_path, postgres_db, 2, ingress=1,
        QUERY_INTERVAL_SECONDS="60", RESYNC_INTERVAL_SECONDS="60", FAILOVER_WINDOW_SECONDS="0",
    ) as c:
        await c.join_all(rooms)
        await c.declare(rooms)
        await until(lambda: _all_recording(c, rooms), 60, "8 rooms recording")
        mine = await rooms_of(c, 0, rooms)
        assert mine, "replica 0 owns none of the 8 rooms"
        before = await c.metric(0, "wake_notifications_received_total")
        await kill_tasks(c, mine)
        healed = await until(lambda: _all_recording(c, rooms), 20, "healed by the owner")
        assert healed < 20
        assert await c.metric(0, "wake_notifications_received_total") > before
        assert await c.metric(1, "wake_notifications_sent_total") >= 1

        # Who is who: /readyz of each, and recctl status, agree on the two members and shards.
        views = [(await c.readyz(i))["replica"] for i in (0, 1)]
        assert {m["id"] for m in views[0]["live_replicas"]} == {v["id"] for v in views}
        assert len(views[0]["owned_shards"]) + len(views[1]["owned_shards"]) == 64
        # ... and the shares of the provider's limit they hold add up to no more than it
        shares = [(await c.readyz(i))["rate_shares"]["agora"] for i in (0, 1)]
        assert all(s["valid"] for s in shares)
        assert sum(s["share_per_s"] for s in shares) <= shares[0]["limit_per_s"]
        assert await c.metric(0, "provider_rate_share_per_second") > 0
        done = recctl("status", env=c.env)
        assert done.returncode == 0, done.stderr
        assert "2 live replica(s)" in done.stdout
        for view in views:
            assert f"{view['id']}  heartbeat" in done.stdout
            assert f"{len(view['owned_shards'])} shard(s)" in done.stdout
        # A one-shot `recctl reconcile` would act beside the owners without a fence: refused.
        done = recctl("reconcile", env=c.env)
        assert done.returncode == 2 and "2 replica(s) are running" in done.stderr, done.stderr
        assert recctl("reconcile", "--dry-run", "--offline", env=c.env).returncode == 0


async def test_three_replicas_share_one_rate_limit_measured_at_the_emulator(
    tmp_path: Path, postgres_db: str
) -> None:
    """10 calls/s for the App ID (the emulator answers 429 above it): three replicas with 40
    rooms to start and sessions to query every 2 s ask for more than that; no one-second
    window at the emulator may see more than 10, and none is refused."""
    rooms = [f"room-{i}" for i in range(40)]
    async with cluster(
        tmp_path, postgres_db, 3, ingress=2, emulator_flags=("--qps-limit", "10"),
        AGORA_RATE_LIMIT_QPS="10", QUERY_INTERVAL_SECONDS="2",
    ) as c:
        await c.join_all(rooms)
        await c.declare(rooms)
        await until(lambda: _all_recording(c, rooms), 90, "40 rooms recording")
        stats = await c.stats()
        assert stats["rate_limited"] == 0, stats
        assert stats["max_qps"] <= 10, stats
        assert stats["max_qps"] >= 7, stats  # the demand did press on the limit
        calls = [await c.metric(i, "reconcile_actions_total") for i in range(3)]
        assert sum(1 for n in calls if n > 0) == 3, calls  # all three did provider work
