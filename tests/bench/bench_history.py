"""Costs against history: the writer, a reconcile pass and ``recctl status ROOM`` on a fresh
store and on stores with a long log, in one run.

The log is :mod:`tests.bench.traffic`'s: 1,000 channels recording session after session, the
documented NCS mix with redundant deliveries and retries, the reconciler's intents, results
and queries. It is written once through the real writer (``synchronous=OFF`` for speed; the
projections as live), and copied as it grows past each size, so that every size is measured
in the same rounds, interleaved, under the same spells of this shared machine. Per round and
store:

- the writer: batches of 5 new events of the same traffic (``SqliteWriter.write``), CPU
  seconds per event (``time.process_time``: the fsync's wait is not the history's);
- a reconcile pass: ``Reconciler.state`` + ``plan`` for random rooms, through the store's
  async reads, wall and CPU per pass;
- ``recctl status ROOM`` (``status_command`` for one room), wall per call.

Each figure is the median of its rounds; a ratio is the fresh store's cost over the long one's
(1.0: history costs nothing). Target: every ratio >= 0.9 at the largest size.
Reproduce: ``make bench`` (``BENCH_HISTORY_EVENTS=5000000`` for a longer log); writes
``bench-results/history.json`` and ``history.png``.
"""

from __future__ import annotations

import asyncio
import copy as copy_module
import io
import json
import os
import random
import shutil
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconcilers.engine import Reconciler
from reconcilers.events import NewEvent
from reconcilers.plan import PlanConfig
from reconcilers.projections import PROJECTIONS
from service.commands.status import status_command
from service.store.sqlite import SqliteStore
from service.store.sqlite.writer import SqliteWriter
from tests.bench.plots import plot_lines
from tests.bench.traffic import Traffic, room_key
from tests.procs import ROOT

CHANNELS = 1000
SMOKE_CHANNELS = 50
FULL_SIZES = (20_000, 100_000, 300_000, 1_000_000)
SMOKE_SIZES = (2_000, 8_000)
FULL_ROUNDS = 5
SMOKE_ROUNDS = 1
WRITE_BATCHES, WARM_BATCHES, BATCH = 400, 400, 5
PASSES = 300
STATUS_CALLS = 50
TARGET_RATIO = 0.9


@dataclass
class Costs:
    write_cpu_us: float  # per event
    pass_ms: float
    pass_cpu_ms: float
    status_ms: float


def sizes(full: bool) -> tuple[int, ...]:
    if not full:
        return SMOKE_SIZES
    top = int(os.environ.get("BENCH_HISTORY_EVENTS", FULL_SIZES[-1]))
    return (*(s for s in FULL_SIZES if s < top), top)


def build(directory: Path, channels: int, wanted: tuple[int, ...]) -> dict[int, LogAtSize]:
    """One log, written through the real writer; at each size a copy of the file and of the
    traffic's state, whose next events are that store's new ones."""
    path = directory / "history.db"
    writer = SqliteWriter(path, PROJECTIONS)
    writer.open()
    writer.conn.execute("PRAGMA synchronous=OFF")
    traffic = Traffic(channels, seed=1, with_reconciler=True)
    stores: dict[int, LogAtSize] = {}
    written = 0
    try:
        for size in wanted:
            while written < size:
                batch: list[NewEvent] = []
                while len(batch) < 500 and written + len(batch) < size:
                    batch += traffic.step()
                writer.write(batch)
                written += len(batch)
            copy = path
            if size != wanted[-1]:
                writer.checkpoint()
                copy = directory / f"history-{size}.db"
                shutil.copyfile(path, copy)
            stores[size] = LogAtSize(copy, copy_module.deepcopy(traffic))
    finally:
        writer.close()
    return stores


@dataclass
class LogAtSize:
    path: Path
    traffic: Traffic

    def next_batches(self, count: int) -> list[list[NewEvent]]:
        batches = []
        for _ in range(count):
            batch: list[NewEvent] = []
            while len(batch) < BATCH:
                batch += self.traffic.step()
            batches.append(batch)
        return batches


def measure_writes(path: Path, warm: list[list[NewEvent]], events: list[list[NewEvent]]) -> float:
    """CPU µs per event of ``events``, after ``warm``: a writer that has run a while (what it
    keeps, SQLite's cache and the mapped pages), as in a service that has."""
    writer = SqliteWriter(path, PROJECTIONS)
    writer.open()
    writer.conn.execute("PRAGMA synchronous=OFF")
    try:
        for batch in warm:
            writer.write(batch)
        started = time.process_time()
        for batch in events:
            writer.write(batch)
        return (time.process_time() - started) / sum(len(b) for b in events) * 1e6
    finally:
        writer.close()


async def measure_reads(path: Path, channels: int, seed: int) -> tuple[float, float, float]:
    store = await SqliteStore.open(path, PROJECTIONS)
    try:
        reconciler = Reconciler(store, {}, lambda name: None, PlanConfig())  # type: ignore[arg-type, return-value]
        rng = random.Random(seed)
        keys = [room_key(rng.randrange(channels)) for _ in range(PASSES)]
        for key in keys[:20]:
            reconciler.plan(await reconciler.state(key))
        wall, cpu = time.perf_counter(), time.process_time()
        for key in keys:
            reconciler.plan(await reconciler.state(key))
        pass_ms = (time.perf_counter() - wall) / len(keys) * 1000
        pass_cpu_ms = (time.process_time() - cpu) / len(keys) * 1000
        wall = time.perf_counter()
        for key in keys[:STATUS_CALLS]:
            assert await status_command(reconciler, key, False, io.StringIO()) == 0
        status_ms = (time.perf_counter() - wall) / STATUS_CALLS * 1000
        return pass_ms, pass_cpu_ms, status_ms
    finally:
        await store.close()


def median_costs(samples: list[Costs]) -> Costs:
    return Costs(
        *(statistics.median(getattr(s, f) for s in samples) for f in Costs.__dataclass_fields__)
    )


def test_costs_do_not_grow_with_history(full_bench: bool, tmp_path: Path) -> None:
    channels = CHANNELS if full_bench else SMOKE_CHANNELS
    wanted = sizes(full_bench)
    started = time.perf_counter()
    stores = build(tmp_path, channels, wanted)
    build_seconds = time.perf_counter() - started
    rounds = FULL_ROUNDS if full_bench else SMOKE_ROUNDS
    samples: dict[int, list[Costs]] = {size: [] for size in stores}
    for r in range(rounds):
        order = list(stores.items())
        for size, store in order if r % 2 == 0 else reversed(order):  # neither always first
            warm = store.next_batches(WARM_BATCHES)
            write_us = measure_writes(store.path, warm, store.next_batches(WRITE_BATCHES))
            pass_ms, pass_cpu_ms, status_ms = asyncio.run(measure_reads(store.path, channels, r))
            samples[size].append(Costs(write_us, pass_ms, pass_cpu_ms, status_ms))
    costs = {size: median_costs(s) for size, s in samples.items()}
    fresh, longest = costs[wanted[0]], costs[wanted[-1]]
    ratios = {
        "intake_throughput": fresh.write_cpu_us / longest.write_cpu_us,
        "reconcile_pass": fresh.pass_ms / longest.pass_ms,
        "reconcile_pass_cpu": fresh.pass_cpu_ms / longest.pass_cpu_ms,
        "status_room": fresh.status_ms / longest.status_ms,
    }
    report: dict[str, Any] = {
        "mode": "full" if full_bench else "smoke",
        "channels": channels,
        "rounds": rounds,
        "build_seconds": round(build_seconds, 1),
        "sizes": {
            str(size): {f: round(getattr(c, f), 4) for f in Costs.__dataclass_fields__}
            for size, c in costs.items()
        },
        "ratios_longest_to_fresh": {k: round(v, 3) for k, v in ratios.items()},
        "target": TARGET_RATIO,
    }
    print(f"\nhistory ({channels} channels, {rounds} rounds, built in {build_seconds:.0f} s):")
    print(f"{'events':>10} {'write µs/ev':>12} {'pass ms':>9} {'pass cpu':>9} {'status ms':>10}")
    for size, c in costs.items():
        print(
            f"{size:>10} {c.write_cpu_us:>12.1f} {c.pass_ms:>9.3f} {c.pass_cpu_ms:>9.3f}"
            f" {c.status_ms:>10.3f}"
        )
    print("ratios (fresh / longest): " + ", ".join(f"{k} {v:.3f}" for k, v in ratios.items()))
    out = ROOT / "bench-results" if full_bench else tmp_path
    out.mkdir(exist_ok=True)
    (out / "history.json").write_text(json.dumps(report, indent=2) + "\n")
    xs = list(costs)
    plot_lines(
        out / "history.png",
        "Costs against the log's size (1.0 = a fresh store's)",
        "events in the log",
        "fresh store's cost / this store's (higher is better)",
        {
            "intake (writer CPU per event)": (
                xs,
                [fresh.write_cpu_us / costs[s].write_cpu_us for s in xs],
            ),
            "reconcile pass": (xs, [fresh.pass_ms / costs[s].pass_ms for s in xs]),
            "recctl status ROOM": (xs, [fresh.status_ms / costs[s].status_ms for s in xs]),
        },
        logx=True,
        floor=TARGET_RATIO,
    )
    assert all(v > 0 for v in ratios.values())
    if full_bench:
        assert min(ratios.values()) >= TARGET_RATIO, report
