"""``make soak``: one long chaos run with the service's memory sampled, and whether it levels off.

``python -m tests.chaos.soak --minutes 10 [--seed 1] [--every 10]``. The workload and faults are
the chaos run's (no ``kill -9``: the process must live the whole run), the invariants are
checked at the end as in ``make chaos``. Every ``--every`` seconds the resident set (RSS) of
``recctl serve`` and of its SQLite writer process is read from ``/proc``. The report compares
how fast RSS grew in the first and the second half of the run: it levels off when the second
half grew less than ``PLATEAU_MB_PER_MINUTE``. Writes ``bench-results/soak.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.chaos.harness import ChaosConfig, ChaosRun

PLATEAU_MB_PER_MINUTE = 0.2


def rss_mb(pid: int) -> float:
    """The resident set of ``pid`` in MB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares growth of ``(minute, MB)`` points, in MB per minute."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    den = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / den if den else 0.0


def verdict(samples: list[dict[str, float]]) -> dict[str, Any]:
    total = [(s["minute"], s["service_mb"] + s["writer_mb"]) for s in samples]
    half = len(total) // 2
    first, second = slope(total[: half + 1]), slope(total[half:])
    return {
        "rss_start_mb": round(total[0][1], 1) if total else None,
        "rss_end_mb": round(total[-1][1], 1) if total else None,
        "rss_max_mb": round(max(y for _, y in total), 1) if total else None,
        "first_half_mb_per_min": round(first, 3),
        "second_half_mb_per_min": round(second, 3),
        "levels_off": second < PLATEAU_MB_PER_MINUTE,
    }


async def soak(minutes: float, seed: int, every: float, workdir: Path) -> dict[str, Any]:
    cfg = ChaosConfig(seed=seed, chaos_seconds=minutes * 60, service_kills=0)
    run = ChaosRun(cfg, workdir)
    task = asyncio.create_task(run.execute())
    samples: list[dict[str, float]] = []
    started: float | None = None
    first_pid: int | None = None
    while not task.done():
        service = run.service
        if service is not None and service.process.poll() is None:
            pid = service.process.pid
            first_pid = first_pid or pid
            if pid != first_pid:  # the quiesce phase restarted it: the run's process is gone
                await asyncio.wait({task})
                break
            if started is None:
                started = time.monotonic()
            writer = sum(rss_mb(c) for c in children(pid))
            samples.append({
                "minute": round((time.monotonic() - started) / 60, 3),
                "service_mb": round(rss_mb(pid), 2),
                "writer_mb": round(writer, 2),
            })
        await asyncio.wait({task}, timeout=every)  # the sampling period, or the end
    report = task.result()
    return {
        "minutes": minutes,
        "seed": seed,
        "failures": report.failures(cfg),
        "report": report.to_json(),
        "rss": verdict(samples),
        "samples": samples,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--every", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--out", default="bench-results/soak.json")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    result = asyncio.run(soak(args.minutes, args.seed, args.every, workdir))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    rss = result["rss"]
    print(json.dumps({k: v for k, v in result.items() if k not in ("samples", "report")}, indent=2))
    print(f"RSS {rss['rss_start_mb']} -> {rss['rss_end_mb']} MB; "
          f"{'levels off' if rss['levels_off'] else 'still growing'}; run dir {workdir}")
    return 1 if result["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
