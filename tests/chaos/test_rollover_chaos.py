"""Chaos with spec changes (issue 21): the same seeded workload, with some PUTs switching a
recording room between mix and individual. Every rollover must keep the invariants: nothing
lost, no double (two of our recorders overlap only where the log names a rollover), orphans
within their bound, convergence, and replay."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path

import pytest

from tests.chaos.harness import ChaosConfig, run_seed


@pytest.mark.slow
async def test_chaos_with_mode_changes_keeps_every_invariant(tmp_path: Path) -> None:
    # Seed 13: six rollovers in 12 s, three of them overlapping two recorders for the hand-over.
    cfg = ChaosConfig(seed=13, chaos_seconds=12.0, converge_limit=60.0, spec_changes=True)
    report = await run_seed(cfg, tmp_path)
    problems = report.failures(cfg)
    assert not problems, f"seed {cfg.seed}: {problems}\nrun dir: {tmp_path}"
    with contextlib.closing(sqlite3.connect(tmp_path / "chaos.db")) as db:
        reasons = [
            json.loads(payload).get("reason", "")
            for (payload,) in db.execute("SELECT payload FROM events WHERE type = 'intent.reserve'")
        ]
    assert any(r.startswith("rollover") for r in reasons), "the workload did roll over"
