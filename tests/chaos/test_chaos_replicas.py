"""A short seeded slice of ``make chaos BACKEND=postgres REPLICAS=3`` inside ``make test``: one
seed, three replicas on a real PostgreSQL, replicas killed and paused past their lease."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.replicas import ReplicaChaosConfig, run_replica_seed


@pytest.mark.slow
async def test_chaos_with_three_replicas_keeps_every_invariant(
    tmp_path: Path, postgres_db: str
) -> None:
    cfg = ReplicaChaosConfig(seed=7, chaos_seconds=12.0, converge_limit=60.0)
    report = await run_replica_seed(cfg, tmp_path, postgres_db)
    problems = report.failures(cfg)
    assert not problems, f"seed 7: {problems}\nrun dir: {tmp_path}"
    assert report.service_kills == cfg.service_kills + 1
    assert report.acked_api > 0 and report.acked_webhooks > 0
