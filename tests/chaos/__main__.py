"""``make chaos``: run N seeds, print the table, write ``bench-results/chaos.json``.

``python -m tests.chaos --seeds 100 [--first 1] [--jobs 2] [--chaos-seconds 15]
[--backend postgres --replicas 3] [--spec-changes]``: with PostgreSQL, one server (started
here, as the tests start it) holds a database per seed, shared by that seed's replicas.
``--spec-changes``: some PUTs switch a room's mode (rollovers under faults).
Exit status 1 when any run broke an invariant.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.chaos.harness import ChaosConfig, RunReport, run_seed
from tests.chaos.replicas import ReplicaChaosConfig, run_replica_seed
from tests.support.pg_server import admin, running_server


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def summarize(reports: list[RunReport], cfg: ChaosConfig) -> dict[str, Any]:
    conv = [r.convergence_s for r in reports if r.convergence_s is not None]
    return {
        "runs": len(reports),
        "failed_runs": sum(1 for r in reports if r.failures(cfg)),
        "events_acknowledged": sum(r.acked_api + r.acked_webhooks for r in reports),
        "api_acknowledged": sum(r.acked_api for r in reports),
        "webhooks_acknowledged": sum(r.acked_webhooks for r in reports),
        "events_lost": sum(len(r.lost) for r in reports),
        "double_sessions": sum(len(r.doubles) for r in reports),
        "overlap_max_s": max((r.overlap_max_s for r in reports), default=0.0),
        "rollover_overlaps": sum(r.rollover_overlaps for r in reports),
        "cross_tenant_leaks": sum(len(r.leaks) for r in reports),
        "disconnect_storms": sum(r.storms for r in reports),
        "landed_start_then_stop": sum(
            r.fault_profiles.count("start-landed-then-stop") for r in reports
        ),
        "orphan_lifetime_max_s": max((r.orphan_max_s for r in reports), default=0.0),
        "orphans_over_bound": sum(len(r.orphans_over_bound) for r in reports),
        "not_converged": sum(1 for r in reports if not r.converged),
        "convergence_p50_s": _percentile(conv, 0.5),
        "convergence_p99_s": _percentile(conv, 0.99),
        "convergence_max_s": max(conv, default=None),
        "replay_mismatches": sum(1 for r in reports if not r.replay_ok),
        "service_kill9": sum(r.service_kills for r in reports),
        "recorder_kills": sum(r.recorder_kills for r in reports),
        "api_5xx": sum(r.api_5xx for r in reports),
        "provider_tasks": sum(r.tasks for r in reports),
    }


def table(summary: dict[str, Any]) -> str:
    def fmt(value: Any) -> str:
        return (
            "-" if value is None else (f"{value:.2f}" if isinstance(value, float) else str(value))
        )

    width = max(len(k) for k in summary)
    return "\n".join(f"{k.ljust(width)}  {fmt(v)}" for k, v in summary.items())


async def main_async(args: argparse.Namespace) -> int:
    base: ChaosConfig = ChaosConfig(seed=0, chaos_seconds=args.chaos_seconds, rooms=args.rooms)
    if args.backend == "postgres":
        base = ReplicaChaosConfig(
            seed=0, chaos_seconds=args.chaos_seconds, rooms=args.rooms, replicas=args.replicas
        )
    gate = asyncio.Semaphore(args.jobs)
    root = Path(tempfile.mkdtemp(prefix="chaos-"))
    reports: list[RunReport] = []

    async def one(seed: int) -> None:
        async with gate:
            cfg: ChaosConfig
            if args.backend == "postgres":
                cfg = ReplicaChaosConfig(
                    seed=seed, chaos_seconds=args.chaos_seconds, rooms=args.rooms,
                    replicas=args.replicas,
                )
                assert server is not None
                database = f"chaos_{seed}"
                await asyncio.to_thread(
                    admin, server.dsn(), f"CREATE DATABASE {database} TEMPLATE template0"
                )
                report = await run_replica_seed(cfg, root / f"seed-{seed}", server.dsn(database))
            else:
                cfg = ChaosConfig(
                    seed=seed,
                    chaos_seconds=args.chaos_seconds,
                    rooms=args.rooms,
                    spec_changes=args.spec_changes,
                )
                report = await run_seed(cfg, root / f"seed-{seed}")
            reports.append(report)
            await write(sorted(reports, key=lambda r: r.seed))  # partial runs keep their figures
            problems = report.failures(cfg)
            status = "ok" if not problems else "FAIL " + "; ".join(problems)
            conv = "-" if report.convergence_s is None else f"{report.convergence_s:.1f}s"
            print(
                f"seed {seed:4d}: {status}  (converged {conv}, acked "
                f"{report.acked_api}+{report.acked_webhooks}, {report.duration_s}s)",
                flush=True,
            )

    seeds = range(args.first, args.first + args.seeds)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    async def write(done: list[RunReport]) -> dict[str, Any]:
        summary = summarize(done, base)
        document = {
            "config": {**base.__dict__, "seed": None, "seeds": list(seeds), "jobs": args.jobs},
            "summary": summary,
            "runs": [r.to_json() for r in done],
        }
        await asyncio.to_thread(out.write_text, json.dumps(document, indent=2))
        return summary

    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        server = (
            stack.enter_context(running_server()) if args.backend == "postgres" else None
        )
        await asyncio.gather(*(one(s) for s in seeds))
    reports.sort(key=lambda r: r.seed)
    summary = await write(reports)
    print()
    print(table(summary))
    print(f"\n{len(reports)} seeds in {time.monotonic() - started:.0f}s; run dirs in {root}")
    return 1 if summary["failed_runs"] else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--first", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--rooms", type=int, default=4)
    parser.add_argument("--chaos-seconds", type=float, default=15.0)
    parser.add_argument("--out", default="bench-results/chaos.json")
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--replicas", type=int, default=1, help="with --backend postgres")
    parser.add_argument(
        "--spec-changes",
        action="store_true",
        help="some PUTs switch a recording room between mix and individual (rollovers)",
    )
    return asyncio.run(main_async(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
