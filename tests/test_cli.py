"""``recctl``: exit codes, ``events``, ``replay``, ``emulate`` delegation, the command registry,
``--output``, completion, and a closed pipe."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import io
import json
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import click
import pytest

from reconcilers.events import NewEvent
from service import cli
from service.commands import emulate
from service.commands.events import tail_events
from service.store import open_store
from tests.helpers import notification
from tests.procs import ROOT, clean_env, recctl


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
    monkeypatch.setenv("DATABASE_URL", "mysql://db/recorder")
    assert cli.main(["events"]) == 2
    assert "invalid environment variable DATABASE_URL" in capsys.readouterr().err


def test_a_database_that_cannot_be_reached_is_one_line_and_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://recctl@127.0.0.1:1/recorder")
    assert cli.main(["events"]) == 1
    assert capsys.readouterr().err.startswith("error: cannot connect to PostgreSQL")


def test_serve_as_a_process_reports_config_errors_the_same_way(tmp_path: Path) -> None:
    done = recctl("serve", env=clean_env(LOG_LEVEL="LOUD"))
    assert done.returncode == 2
    assert done.stderr.startswith("error: invalid environment variable LOG_LEVEL: ")


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in ([], ["nonsense"], ["events", "--bogus"], ["events", "--output", "xml"]):
        assert cli.main(argv) == 2, argv
    assert "No such option '--bogus'" in capsys.readouterr().err


def test_events_prints_a_table(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    seed(db_url, 3)
    assert cli.main(["events"]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert header.split() == ["SEQ", "RECEIVED", "SOURCE", "TYPE", "ROOM", "SESSION"]
    assert [r.split()[0] for r in rows] == ["1", "2", "3"]
    assert rows[0].split()[2:5] == ["agora", "agora.recorder_started", "room-0"]


def test_events_as_json_lines_filtered(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    seed(db_url, 5)
    assert cli.main(["events", "--json", "--channel", "room-1", "--since", "2"]) == 0
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
            tail_events(store, out, since=1, output="jsonl", follow=True, stop=stop, interval=0.01)
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
    monkeypatch.setitem(emulate.EMULATORS, "agora", ("fake_emulator_cli", "a fake"))
    assert cli.main(["emulate", "agora", "--port", "9001"]) == 3
    assert seen[0].port == 9001


def test_emulate_without_the_emulator_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(emulate.EMULATORS, "agora", ("service.emulators.not_built_yet.cli", "-"))
    assert cli.main(["emulate", "agora"]) == 2
    assert "emulator is not available" in capsys.readouterr().err


def test_a_command_is_added_by_listing_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    module = types.ModuleType("fake_hello_command")

    @click.command()
    @click.option("--room")
    def hello(room: str | None) -> int:
        return 0 if room == "a/b" else 1

    module.hello = hello  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_hello_command", module)
    monkeypatch.setitem(cli.COMMANDS, "hello", "fake_hello_command:hello")
    assert cli.main(["hello", "--room", "a/b"]) == 0
    assert cli.main(["--help"]) == 0
    assert "hello" in capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_every_command_has_help(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([name, "--help"]) == 0
    assert capsys.readouterr().out.startswith(f"Usage: recctl {name}")


def test_emulate_lists_the_providers_and_each_has_its_own_help() -> None:
    listed = recctl("emulate", "--help", env=clean_env())
    assert listed.returncode == 0, listed.stderr
    assert "agora" in listed.stdout and "cloudflare" in listed.stdout
    for provider, flag in (("agora", "--ncs-secret"), ("cloudflare", "--public-key-out")):
        helped = recctl("emulate", provider, "--help", env=clean_env())
        assert helped.returncode == 0, helped.stderr
        assert helped.stdout.startswith(f"Usage: recctl emulate {provider} [OPTIONS]")
        assert flag in helped.stdout
    bad = recctl("emulate", "agora", "--port", "many", env=clean_env())
    assert bad.returncode == 2 and "'many' is not a valid integer" in bad.stderr


@pytest.mark.parametrize(
    ("provider", "argv"),
    [
        ("agora", []),
        ("agora", ["--port", "0", "--speed", "30", "--no-rtc-events", "--redundant-callbacks",
                   "--error-rate", "start=0.1", "--error-rate", "0.2", "--latency", "0.1,0.2",
                   "--callback-retry-delays", "0,1", "--access-log", "--seed", "7"]),
        ("cloudflare", []),
        ("cloudflare", ["--invoked-webhook", "--timeout-rate", "stop=0.5", "--fault-seed", "3",
                        "--qps-limit", "0", "--api-token", "t"]),
    ],
)
def test_emulate_hands_the_emulator_what_its_own_parser_would(
    provider: str, argv: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The click options are made from the emulator's argparse parser: the same values."""
    module = importlib.import_module(emulate.EMULATORS[provider][0])
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    seen: list[argparse.Namespace] = []
    monkeypatch.setattr(module, "main", lambda args: seen.append(args) or 0)
    assert cli.main(["emulate", provider, *argv]) == 0
    assert vars(seen[0]) == vars(parser.parse_args(argv))
    assert module.config_from_args(seen[0]) == module.config_from_args(parser.parse_args(argv))


def test_events_output_json_is_one_array(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    seed(db_url, 3)
    assert cli.main(["events", "--output", "json"]) == 0
    assert [e["seq"] for e in json.loads(capsys.readouterr().out)] == [1, 2, 3]
    assert cli.main(["events", "-o", "json", "--since", "3"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_a_missing_event_log_is_one_line_and_exit_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/nowhere.db")
    for command in (["events"], ["status"], ["replay"], ["reconcile", "--dry-run"]):
        assert cli.main(command) == 1, command
        err = capsys.readouterr().err
        assert err.startswith(f"error: no event log at {tmp_path}/nowhere.db"), err
        assert err.count("\n") == 1
    assert not (tmp_path / "nowhere.db").exists(), "nothing was created"


def test_a_log_that_cannot_be_opened_is_one_line_and_exit_1(tmp_path: Path) -> None:
    (tmp_path / "notes.db").write_text("not a database")
    for url in (f"sqlite:///{tmp_path}/notes.db", f"sqlite:///{tmp_path}"):
        done = recctl("status", env=clean_env(DATABASE_URL=url))
        assert done.returncode == 1
        assert done.stderr.startswith(f"error: cannot open the event log {url}: "), done.stderr
        assert done.stderr.count("\n") == 1, "no traceback"


def test_a_user_error_as_a_process_is_one_line_without_traceback(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/events.db"
    seed(url, 1)
    done = recctl("events", "--room", "acme/nowhere", env=clean_env(DATABASE_URL=url))
    assert done.returncode == 1
    assert done.stderr == (
        "error: no such room 'acme/nowhere' (use tenant/room, or --channel for a provider "
        "channel)\n"
    )


@pytest.mark.parametrize(
    "command", [["events"], ["status", "--output", "json"], ["reconcile", "--dry-run"]]
)
def test_a_reader_that_went_away_ends_the_command_quietly(
    tmp_path: Path, command: list[str]
) -> None:
    """``recctl events | head``: the pipe closes under us; no traceback, exit 141 as for a
    process SIGPIPE killed. The pipe's reading end is closed before the command starts, so its
    first write fails, however large the pipe's buffer."""
    url = f"sqlite:///{tmp_path}/events.db"
    seed(url, 5)
    declare_rooms(url, 3)
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "service.cli", *command],
            cwd=ROOT, env=clean_env(DATABASE_URL=url), stdout=write, stderr=subprocess.PIPE,
            text=True, timeout=60, check=False,
        )
    finally:
        os.close(write)
    assert done.stderr == "", done.stderr
    assert done.returncode == cli.EXIT_BROKEN_PIPE


def declare_rooms(url: str, count: int) -> None:
    """``count`` rooms declared through the API's event, as the service stores them."""
    from reconcilers.projections import PROJECTIONS

    async def run() -> None:
        store = await open_store(url, PROJECTIONS)
        try:
            for i in range(count):
                spec = {"state": "recording", "provider": "agora", "mode": "mix",
                        "channel": f"room-{i}", "storage": "default", "options": {}}
                payload = {"tenant": "acme", "name": f"room-{i}", "spec": spec,
                           "channel_key": f"agora/room-{i}"}
                key = f"acme/room-{i}"
                await store.append(NewEvent("api", key, "room.desired", payload, key))
        finally:
            await store.close()

    asyncio.run(run())


def test_completion_scripts_are_clicks(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["completion", "bash"]) == 0
    script = capsys.readouterr().out
    assert "_RECCTL_COMPLETE=bash_complete" in script
    done = subprocess.run(
        [sys.executable, "-m", "service.cli"],
        cwd=ROOT,
        env=clean_env(_RECCTL_COMPLETE="bash_complete", COMP_WORDS="recctl ev", COMP_CWORD="1"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0 and "events" in done.stdout, done


def test_serve_creates_a_log_only_in_a_directory_that_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from service.commands import serve

    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/no-such-dir/events.db")
    assert cli.main(["serve"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "DATABASE_URL" in err and "no directory" in err
    new = tmp_path / "events.db"
    assert serve._new_log(f"sqlite:///{new}") == str(new)  # said in the log by serve
    seed(f"sqlite:///{new}", 1)
    assert serve._new_log(f"sqlite:///{new}") is None


def test_a_malformed_app_certificate_is_refused_at_start_up_without_showing_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/events.db")
    monkeypatch.setenv("AGORA_APP_CERTIFICATE", "my-secret-certificate-value")
    assert cli.main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "AGORA_APP_CERTIFICATE" in err and "my-secret-certificate-value" not in err
    assert not (tmp_path / "events.db").exists()


def test_the_progress_bar_draws_on_a_terminal_only() -> None:
    from service.commands.progress import progress

    drawn = io.StringIO()
    with progress("copying events", total=3, file=drawn, enabled=True) as advance:
        for _ in range(3):
            advance(1)
    assert "copying events" in drawn.getvalue() and "3/3" in drawn.getvalue()
    piped = io.StringIO()  # not a terminal: nothing drawn
    with progress("copying events", total=3, file=piped) as advance:
        advance(3)
    assert piped.getvalue() == ""
