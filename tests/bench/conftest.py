"""Benchmarks: ``bench_*.py`` files here are collected. Without ``--bench`` they run a short
smoke slice (so ``make test`` keeps them working); ``make bench`` passes ``--bench``."""

from __future__ import annotations

from pathlib import Path

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--bench", action="store_true", default=False, help="run the full benchmarks")


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Module | None:
    if parent.session.isinitpath(file_path):
        return None  # named on the command line: pytest's own python plugin collects it
    if file_path.suffix == ".py" and file_path.name.startswith("bench_"):
        module: pytest.Module = pytest.Module.from_parent(parent, path=file_path)
        return module
    return None


@pytest.fixture
def full_bench(request: pytest.FixtureRequest) -> bool:
    """True under ``--bench``; the option is unknown when this conftest loads late (smoke)."""
    return bool(request.config.getoption("--bench", default=False))
