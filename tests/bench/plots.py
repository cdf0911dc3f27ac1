"""One PNG per benchmark, written next to its JSON (matplotlib without a display)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

Series = tuple[Sequence[float], Sequence[float]]


def plot_lines(
    path: Path,
    title: str,
    xlabel: str,
    ylabel: str,
    series: Mapping[str, Series],
    *,
    logx: bool = False,
    floor: float | None = None,
) -> Path:
    """A line per series (x, y); ``floor``: a dashed line for a target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for name, (xs, ys) in series.items():
        ax.plot(list(xs), list(ys), marker="o", label=name)
    if floor is not None:
        ax.axhline(floor, linestyle="--", color="grey", label=f"target {floor:g}")
    if logx:
        ax.set_xscale("log")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


class Rounds(Protocol):
    name: str
    rounds_rps: list[float]


def plot_rounds(path: Path, title: str, phases: Iterable[Rounds]) -> Path:
    """Throughput round by round, a line per server: the rounds alternate between servers, so
    a slow spell of the machine shows as a dip in every line at once, not as a gap in one."""
    series = {p.name: (range(1, len(p.rounds_rps) + 1), p.rounds_rps) for p in phases}
    return plot_lines(path, title, "round (servers in turn)", "requests/s", series)
