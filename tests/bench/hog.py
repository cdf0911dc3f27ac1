"""A noisy neighbour on schedule: a process that spins a CPU for SPIN seconds every PERIOD.

This VM's own spells (its CPU a third to a half slower for 0.1-1 s, now and then) decide the
intake's tail, but they come when they like, so two versions of the code are hard to compare
under them. A hog comes on time, in the bench's own session (so it competes task by task, as a
worker beside the service would): set ``BENCH_HOG=SPIN/PERIOD`` (say ``0.1/2``) and the intake
bench runs each server at half its own throughput once more with the hog.

Run alone: ``python -m tests.bench.hog SPIN PERIOD`` (it spins until killed).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Hog:
    spin: float  # seconds of spinning
    period: float  # seconds from one spell to the next

    @classmethod
    def parse(cls, text: str) -> Hog:
        """``SPIN/PERIOD`` in seconds, e.g. ``0.1/2``; spinning must fit in the period."""
        try:
            spin, period = (float(part) for part in text.split("/"))
        except ValueError:
            raise ValueError(
                f"BENCH_HOG={text!r}: expected SPIN/PERIOD in seconds, e.g. 0.1/2"
            ) from None
        if not 0 < spin < period:
            raise ValueError(f"BENCH_HOG={text!r}: needs 0 < SPIN < PERIOD")
        return cls(spin, period)

    def describe(self) -> str:
        return f"{self.spin * 1000:.0f} ms of spinning every {self.period:g} s"

    @contextmanager
    def running(self) -> Iterator[None]:
        """The hog for the duration of the block; its first spell half a period in."""
        command = [sys.executable, "-m", "tests.bench.hog", str(self.spin), str(self.period)]
        process = subprocess.Popen(command, cwd=ROOT)
        try:
            yield
        finally:
            process.kill()
            process.wait()


def spin_on_schedule(spin: float, period: float) -> None:
    due = time.monotonic() + period / 2
    while True:
        time.sleep(max(0.0, due - time.monotonic()))
        until = time.monotonic() + spin
        while time.monotonic() < until:
            pass
        due += period


if __name__ == "__main__":
    spin_on_schedule(float(sys.argv[1]), float(sys.argv[2]))
