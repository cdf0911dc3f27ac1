"""The periodic job loop (the controller's resync), on the virtual-time loop: exact and instant."""

from __future__ import annotations

import asyncio

from service.periodic import Periodic
from tests.support.virtual_time import now, run


def test_runs_now_then_every_interval() -> None:
    async def main() -> list[float]:
        began: list[float] = []

        async def job() -> None:
            began.append(now())

        periodic = Periodic("job", job, 30.0)
        periodic.start()
        await asyncio.sleep(95.0)
        await periodic.stop()
        return began

    assert run(main) == [0.0, 30.0, 60.0, 90.0]


def test_a_long_run_is_followed_at_once_and_runs_never_overlap() -> None:
    async def main() -> tuple[list[float], int]:
        began: list[float] = []
        running = most = 0

        async def job() -> None:
            nonlocal running, most
            began.append(now())
            running += 1
            most = max(most, running)
            await asyncio.sleep(45.0 if len(began) == 1 else 1.0)
            running -= 1

        periodic = Periodic("job", job, 30.0)
        periodic.start()
        await asyncio.sleep(80.0)
        await periodic.stop()
        return began, most

    assert run(main) == ([0.0, 45.0, 75.0], 1)


def test_a_failing_run_does_not_stop_the_schedule() -> None:
    async def main() -> int:
        runs = 0

        async def job() -> None:
            nonlocal runs
            runs += 1
            raise RuntimeError("store down")

        periodic = Periodic("job", job, 10.0)
        periodic.start()
        await asyncio.sleep(25.0)
        await periodic.stop()
        return runs

    assert run(main) == 3


def test_stop_lets_the_run_under_way_finish_within_the_grace() -> None:
    async def main() -> tuple[list[str], float]:
        seen: list[str] = []

        async def job() -> None:
            seen.append("began")
            await asyncio.sleep(2.0)
            seen.append("finished")

        periodic = Periodic("job", job, 30.0)
        periodic.start()
        await asyncio.sleep(1.0)
        await periodic.stop(grace=5.0)
        return seen, now()

    assert run(main) == (["began", "finished"], 2.0)


def test_stop_cancels_a_run_past_the_grace() -> None:
    async def main() -> tuple[list[str], float]:
        seen: list[str] = []

        async def job() -> None:
            seen.append("began")
            await asyncio.sleep(60.0)
            seen.append("finished")

        periodic = Periodic("job", job, 30.0)
        periodic.start()
        await asyncio.sleep(1.0)
        await periodic.stop(grace=5.0)
        return seen, now()

    assert run(main) == (["began"], 6.0)
