"""The query budget: the advised interval while it fits, stretched beyond, capped, spread evenly."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconcilers.budget import QueryBudget

AGORA = QueryBudget(rate_per_s=10.0)  # share 0.5, 60 s .. 600 s


@pytest.mark.parametrize(
    ("live", "interval", "stretched", "overcommitted"),
    [
        (0, 60.0, False, False),
        (1, 60.0, False, False),
        (300, 60.0, False, False),  # 300 sessions / 60 s = 5 queries/s: exactly half of 10/s
        (301, 60.2, True, False),
        (600, 120.0, True, False),
        (3000, 600.0, True, False),
        (3001, 600.0, True, True),  # even the ceiling spends more than the share
        (100_000, 600.0, True, True),
    ],
)
def test_interval_is_the_advised_one_until_the_rate_share_runs_out(
    live: int, interval: float, stretched: bool, overcommitted: bool
) -> None:
    assert AGORA.interval(live) == pytest.approx(interval)
    assert AGORA.stretched(live) is stretched
    assert AGORA.overcommitted(live) is overcommitted


def test_capacity_and_query_rate() -> None:
    assert AGORA.query_rate == 5.0
    assert AGORA.capacity == 300
    assert QueryBudget(rate_per_s=10.0, share=1.0, min_interval=120.0).capacity == 1200
    assert QueryBudget(rate_per_s=0.1, share=0.3, min_interval=100.0).capacity == 3


def test_a_negative_count_is_treated_as_none() -> None:
    assert AGORA.interval(-5) == 60.0 and not AGORA.stretched(-5)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rate_per_s": 0.0},
        {"rate_per_s": float("inf")},
        {"rate_per_s": 10.0, "share": 0.0},
        {"rate_per_s": 10.0, "share": 1.5},
        {"rate_per_s": 10.0, "min_interval": 0.0},
        {"rate_per_s": 10.0, "min_interval": 700.0},  # above max_interval
        {"rate_per_s": 10.0, "max_interval": float("nan")},
    ],
)
def test_nonsense_is_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        QueryBudget(**kwargs)


@given(
    rate=st.floats(0.01, 1000),
    share=st.floats(0.01, 1),
    low=st.floats(1, 600),
    extra=st.floats(0, 3600),
    live=st.lists(st.integers(0, 10**7), min_size=2, max_size=2),
)
def test_interval_is_bounded_monotone_and_consistent_with_stretched(
    rate: float, share: float, low: float, extra: float, live: list[int]
) -> None:
    budget = QueryBudget(rate, share, min_interval=low, max_interval=low + extra)
    fewer, more = sorted(live)
    assert low <= budget.interval(fewer) <= budget.interval(more) <= low + extra
    for n in (fewer, more):
        if not budget.stretched(n):
            assert budget.interval(n) == low
        elif not budget.overcommitted(n):  # stretched just enough to fit the share
            assert n / budget.interval(n) == pytest.approx(budget.query_rate)
        else:
            assert budget.interval(n) == low + extra


def test_spread_is_stable_across_processes() -> None:
    # Pinned values: Python's salted ``hash`` would change them on every run.
    assert QueryBudget.spread("t1/room-a", 60.0) == pytest.approx(
        QueryBudget.spread("t1/room-a", 1.0) * 60.0
    )
    assert QueryBudget.spread("t1/room-a", 60.0) == pytest.approx(2.8507094227419265, abs=1e-12)
    assert QueryBudget.spread("t1/room-b", 60.0) != QueryBudget.spread("t1/room-a", 60.0)


@given(key=st.text(max_size=50), interval=st.floats(1e-6, 1e6))
def test_spread_is_within_the_interval(key: str, interval: float) -> None:
    offset = QueryBudget.spread(key, interval)
    assert 0.0 <= offset < interval
    assert AGORA.spread(key, interval) == offset


def test_spread_of_no_interval_is_zero() -> None:
    assert QueryBudget.spread("k", 0.0) == 0.0


def test_spread_is_uniform_over_keys() -> None:
    buckets = [0] * 20
    keys = 20_000
    for i in range(keys):
        offset = QueryBudget.spread(f"tenant-{i % 7}/room-{i}", 60.0)
        buckets[int(offset // 3.0)] += 1
    expected = keys / len(buckets)
    chi2 = sum((b - expected) ** 2 / expected for b in buckets)
    assert chi2 < 43.8, f"chi-square {chi2:.1f} with 19 degrees of freedom (p < 0.001)"
