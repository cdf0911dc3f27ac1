"""A short seeded slice of ``make chaos`` inside ``make test``: two seeds, real processes, every
fault kind available to the workload, two ``kill -9`` of the service per run."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.harness import ChaosConfig, run_seed


@pytest.mark.slow
@pytest.mark.parametrize("seed", [3, 5])
async def test_chaos_seed_keeps_every_invariant(tmp_path: Path, seed: int) -> None:
    cfg = ChaosConfig(seed=seed, chaos_seconds=12.0, converge_limit=60.0)
    report = await run_seed(cfg, tmp_path)
    problems = report.failures(cfg)
    assert not problems, f"seed {seed}: {problems}\nrun dir: {tmp_path}"
    assert report.service_kills == cfg.service_kills + 1  # the seeded ones and the last restart
    assert report.acked_api > 0 and report.acked_webhooks > 0
