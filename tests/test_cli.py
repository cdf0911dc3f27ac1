"""``recctl``: exit codes, ``events``, ``replay``, ``emulate`` delegation, the command registry."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import re
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from reconcilers.events import NewEvent
from service import cli
from service.store import open_store
from tests.helpers import notification
from tests.procs import clean_env, recctl


@pytest.fixture
def db_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path}/events.db"
    monkeypatch.setenv("DATABASE_URL", url)
    return url


def seed(url: str, count: int) -> None:
    async def run() -> None:
        store = await open_store(url, ())
        try:
            for i in range(count):
                body = notification(f"n{i}", channel=f"room-{i % 2}", sid=f"sid-{i}")
                event = NewEvent("agora", f"n{i}", "agora.recorder_started", body, f"room-{i % 2}")
                await store.append(event)
        finally:
            await store.close()

    asyncio.run(run())


def test_a_bad_environment_variable_exits_2_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MAX_BODY_BYTES", "lots")
    assert cli.main(["serve"]) == 2
    assert capsys.readouterr().err.startswith(
        "error: invalid environment variable MAX_BODY_BYTES: "
    )
    monkeypatch.delenv("MAX_BODY_BYTES")
    monkeypatch.setenv("DATABASE_URL", "postgresql://db/recorder")
    assert cli.main(["events"]) == 2
    assert "invalid environment variable DATABASE_URL" in capsys.readouterr().err


def test_serve_as_a_process_reports_config_errors_the_same_way(tmp_path: Path) -> None:
    done = recctl("serve", env=clean_env(LOG_LEVEL="LOUD"))
    assert done.returncode == 2
    assert done.stderr.startswith("error: invalid environment variable LOG_LEVEL: ")


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in ([], ["nonsense"], ["events", "--bogus"]):
        with pytest.raises(SystemExit) as exited:
            cli.main(argv)
        assert exited.value.code == 2


def test_events_prints_a_table(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    seed(db_url, 3)
    assert cli.main(["events"]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert header.split() == ["SEQ", "RECEIVED", "SOURCE", "TYPE", "ROOM", "SESSION"]
    assert [r.split()[0] for r in rows] == ["1", "2", "3"]
    assert rows[0].split()[2:5] == ["agora", "agora.recorder_started", "room-0"]


def test_events_as_json_lines_filtered(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    seed(db_url, 5)
    assert cli.main(["events", "--json", "--room", "room-1", "--since", "2"]) == 0
    found = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(e["seq"], e["dedup_key"], e["room"]) for e in found] == [(4, "n3", "room-1")]
    assert found[0]["payload"]["noticeId"] == "n3"
    assert set(found[0]) == {
        "seq",
        "source",
        "dedup_key",
        "type",
        "room",
        "session",
        "received_at",
        "occurred_at",
        "payload",
    }


class Watched(io.StringIO):
    """An output that tells when a given text has been written."""

    def __init__(self, wanted: str) -> None:
        super().__init__()
        self.wanted = wanted
        self.seen = asyncio.Event()

    def write(self, text: str) -> int:
        if self.wanted in text:
            self.seen.set()
        return super().write(text)


async def test_follow_prints_new_events_until_stopped(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path}/events.db", ())
    out = Watched('"new"')
    stop = asyncio.Event()
    try:
        await store.append(NewEvent("api", "old", "t", {}))
        tail = asyncio.create_task(
            cli.tail_events(
                store, out, since=1, as_json=True, follow=True, stop=stop, interval=0.01
            )
        )
        await store.append(NewEvent("api", "new", "t", {}, room="r"))
        await asyncio.wait_for(out.seen.wait(), 10)
        stop.set()
        assert await tail == 2
    finally:
        await store.close()
    assert [json.loads(line)["dedup_key"] for line in out.getvalue().splitlines()] == ["new"]


def test_replay_reports_what_it_folded(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    seed(db_url, 4)
    assert cli.main(["replay"]) == 0
    out = capsys.readouterr().out
    assert re.fullmatch(r"replayed 4 events into [0-9]+ projections \(.+\) in [0-9.]+s\n", out)


def test_emulate_delegates_to_the_emulator_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[argparse.Namespace] = []
    fake = types.ModuleType("fake_emulator_cli")

    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--port", type=int)

    def main(args: argparse.Namespace) -> int:
        seen.append(args)
        return 3

    fake.add_arguments = add_arguments  # type: ignore[attr-defined]
    fake.main = main  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_emulator_cli", fake)
    monkeypatch.setitem(cli.EMULATORS, "agora", "fake_emulator_cli")
    assert cli.main(["emulate", "agora", "--port", "9001"]) == 3
    assert seen[0].port == 9001


def test_emulate_without_the_emulator_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(cli.EMULATORS, "agora", "service.emulators.not_built_yet.cli")
    assert cli.main(["emulate", "agora"]) == 2
    assert "emulator is not available" in capsys.readouterr().err


def test_a_subcommand_module_is_added_by_listing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("fake_status_command")

    def add_parser(subparsers: Any) -> None:
        parser = subparsers.add_parser("status", help="show rooms")
        parser.add_argument("--room")
        parser.set_defaults(handler=lambda args: 0 if args.room == "a/b" else 1)

    module.add_parser = add_parser  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_status_command", module)
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("fake_status_command",))
    assert cli.main(["status", "--room", "a/b"]) == 0
