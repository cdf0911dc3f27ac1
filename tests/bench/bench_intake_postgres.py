"""Durable intake on PostgreSQL beside SQLite, same client load, same run: ratios, not absolutes.

Three set-ups, real ``recctl serve`` processes on loopback, each given signed Agora
notifications (verify, parse, append durably, answer):

- ``sqlite``: one server on a SQLite file (``synchronous=FULL``), the embedded default;
- ``postgresql x1``: one server on the session's PostgreSQL (``synchronous_commit=on``, fsync on);
- ``postgresql x2``: two replicas on that database, each sent half the load at once (half the
  connections each): what a second replica adds when the log is shared and every write
  transaction of both takes the one append lock (``docs/postgresql.md``).

Closed-loop rounds alternate between the set-ups (this machine's speed drifts within minutes;
a ratio compares like with like); a set-up's throughput is its median round. On this 2-core VM
the database server, the replicas and the client share the same two cores, so what the second
replica can add is bounded by the CPU, not by the lock alone.

No target: the figures go to ``docs/benchmarks.md`` (PostgreSQL). Reproduce: ``make bench``
(writes ``bench-results/intake-postgres.json``).
"""

from __future__ import annotations

import json
import os
import statistics
import threading
from pathlib import Path
from typing import Any

from tests.bench.bench_intake import CONCURRENCY, Phase, make_requests
from tests.bench.loadgen import Blast, blast, raw_requests
from tests.bench.plots import plot_rounds
from tests.helpers import SECRET
from tests.procs import ROOT, Server, clean_env

FULL_COUNT = 12_000
SMOKE_COUNT = 200
FULL_ROUNDS = 5
SMOKE_ROUNDS = 1
WARMUP = 300


def _blast_all(servers: list[Server], prefix: str, count: int) -> tuple[list[Blast], float]:
    """``count`` requests split evenly over ``servers`` at once, CONCURRENCY connections in all;
    returns each server's run and the wall time of the slowest."""
    share = count // len(servers)
    runs: list[Blast | None] = [None] * len(servers)
    # Built here, not in the threads: the request builder is not thread-safe.
    raws = [
        raw_requests(s.url, "/webhooks/agora", make_requests(f"{prefix}-{i}", share))
        for i, s in enumerate(servers)
    ]

    def one(i: int, server: Server) -> None:
        runs[i] = blast(server.url, raws[i], CONCURRENCY // len(servers))

    threads = [threading.Thread(target=one, args=(i, s)) for i, s in enumerate(servers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done = [r for r in runs if r is not None]
    assert len(done) == len(servers), "a client thread failed"
    return done, max(r.seconds for r in done)


def _rounds(setups: dict[str, list[Server]], count: int, rounds: int) -> dict[str, Phase]:
    merged: dict[str, Phase] = {name: Phase(name, 0, 0.0, 0, []) for name in setups}
    for i in range(rounds):
        for name, servers in setups.items():
            runs, seconds = _blast_all(servers, f"{name}-{i}", count // rounds)
            phase = merged[name]
            served = sum(len(r.latencies_ms) for r in runs)
            phase.requests += served
            phase.seconds += seconds
            phase.errors += sum(r.errors for r in runs)
            phase.latencies_ms += [ms for r in runs for ms in r.latencies_ms]
            phase.rounds_rps.append(served / seconds)
    return merged


async def test_intake_on_postgresql_beside_sqlite(
    full_bench: bool, tmp_path: Path, postgres_db: str
) -> None:
    count = FULL_COUNT if full_bench else SMOKE_COUNT
    rounds = FULL_ROUNDS if full_bench else SMOKE_ROUNDS
    common = {"AGORA_NCS_SECRET": SECRET, "LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "INFO")}
    sqlite_env = clean_env(DATABASE_URL=f"sqlite:///{tmp_path}/bench.db", **common)
    pg_env = clean_env(DATABASE_URL=postgres_db, **common)
    started = [
        Server.recctl_serve(sqlite_env, tmp_path / "sqlite.log"),
        Server.recctl_serve(pg_env, tmp_path / "pg-1.log"),
        Server.recctl_serve(pg_env, tmp_path / "pg-2a.log"),
        Server.recctl_serve(pg_env, tmp_path / "pg-2b.log"),
    ]
    lite, single, *pair = started
    setups = {"sqlite": [lite], "postgresql x1": [single], "postgresql x2": pair}
    try:
        for server in started:
            await server.wait_healthy()
        for name, servers in setups.items():
            _blast_all(servers, f"warm-{name}", WARMUP)
        phases = _rounds(setups, count, rounds)
    finally:
        for server in started:
            server.stop()

    base = phases["sqlite"].throughput
    report: dict[str, Any] = {
        "mode": "full" if full_bench else "smoke",
        "concurrency": CONCURRENCY,
        "cpus": os.cpu_count(),
        "phases": [p.summary() for p in phases.values()],
        "ratio_to_sqlite": {
            name: round(p.throughput / base, 3) for name, p in phases.items() if name != "sqlite"
        },
    }
    _print(report)
    out = ROOT / "bench-results" if full_bench else tmp_path
    out.mkdir(exist_ok=True)
    (out / "intake-postgres.json").write_text(json.dumps(report, indent=2) + "\n")
    plot_rounds(out / "intake-postgres.png", "Intake: PostgreSQL beside SQLite", phases.values())
    assert (out / "intake-postgres.png").stat().st_size > 0
    assert all(p.errors == 0 for p in phases.values()), report
    assert all(p.requests == count // rounds * rounds for p in phases.values()), report
    assert statistics.fmean(phases["postgresql x1"].latencies_ms) > 0


def _print(report: dict[str, Any]) -> None:
    columns = ("phase", "requests", "throughput_rps", "p50_ms", "p99_ms", "mean_ms")
    print()
    print("  ".join(f"{c:>16}" for c in columns))
    for phase in report["phases"]:
        print("  ".join(f"{phase[c]!s:>16}" for c in columns))
    ratios = ", ".join(f"{name} {r}" for name, r in report["ratio_to_sqlite"].items())
    print(f"throughput as a ratio to SQLite's in the same run: {ratios} [{report['mode']}]")
