"""The operator's commands: ``recctl demo``, ``status`` and ``reconcile``."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from reconcilers.events import NewEvent
from service import cli
from service.commands.demo import demo
from service.commands.reconcile import reconcile_command
from service.commands.status import status_command
from tests.e2e_harness import world
from tests.procs import clean_env


def test_the_demo_tells_a_true_story_and_leaves_a_log_to_explore(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "demo.db"
    out = io.StringIO()
    assert asyncio.run(demo(db, keep=False, out=out)) == 0
    text = out.getvalue()
    assert "healed: standup records again" in text
    story = text.split("The story, from the event log:")[1]
    assert "standup       reconciler: started segment 1" in story, "the killed recorder replaced"
    assert "design-review reconciler: started segment 1" in story, "and the Cloudflare one"
    assert "lecture       reconciler: stopped sid" in story
    assert story.count("reconciler: started segment") == 6, "four rooms, two heals, no doubles"
    assert "design-review Cloudflare: recording" in story, "named by its room, not its meeting"
    assert not re.search(r"^ +\+ *[0-9.]+s +bbb0a1c2", story, re.M), "no meeting id as a room"
    assert re.search(r"its recording is ready", text), "its files reached the bucket"
    assert re.search(r"downloaded [1-9][0-9]* bytes from its presigned URL", text)
    assert re.search(r"lecture +archived ", text), "the archived recording is in the catalog"

    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{db}")
    capsys.readouterr()
    assert cli.main(["status", "--json"]) == 0
    views = {v["key"]: v for v in map(json.loads, capsys.readouterr().out.splitlines())}
    assert set(views) == {"demo/standup", "demo/lecture", "demo/townhall", "demo/design-review"}
    assert views["demo/lecture"]["spec"]["state"] == "stopped"
    assert views["demo/standup"]["observed"]["segment"] == 1
    assert cli.main(["status"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["ROOM", "DESIRED", "PROVIDER", "SESSION", "RECORDING", "REASON"]
    assert len(table) == 7  # the rooms, a blank line, the query budget
    assert re.match(r"3 live session\(s\): each queried every 60s \(as configured", table[-1])
    assert cli.main(["status", "demo/nowhere"]) == 1

    hints = [line.strip() for line in text.splitlines() if line.startswith("  DATABASE_URL=")]
    assert len(hints) == 3
    for hint in hints:  # as printed, in a shell, from where the demo ran
        done = subprocess.run(
            ["bash", "-c", hint], cwd=os.getcwd(), env=clean_env(), capture_output=True,
            text=True, timeout=60, check=False,
        )
        assert done.returncode == 0, (hint, done.stderr)
        if "events --room demo/standup" in hint:
            sources = {row.split()[2] for row in done.stdout.splitlines()[1:]}
            assert sources == {"api", "reconciler", "agora"}, "the room's webhooks too"


async def test_reconcile_shows_the_plan_and_applies_it_unless_dry_run(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        w.emu.join("standup", 11)
        key = await w.declare("standup")
        out, err = io.StringIO(), io.StringIO()
        assert await reconcile_command(w.reconciler, None, True, out, err) == 0
        header, row = out.getvalue().splitlines()
        assert header.split() == ["ROOM", "DESIRED", "OBSERVED", "ACTION", "REASON"]
        assert row.split()[:5] == ["standup", "recording", "(g1)", "nothing", "reserve"]
        assert "planned 1 action(s) over 1 key(s)" in err.getvalue()
        assert not w.live_tasks("standup"), "a dry run changes nothing"

        assert await reconcile_command(w.reconciler, key, False, io.StringIO(), err) == 0
        assert len(w.live_tasks("standup")) == 1
        assert await reconcile_command(w.reconciler, "acme/nowhere", True, out, err) == 1
        assert "no such room 'acme/nowhere'" in err.getvalue()


async def test_status_of_one_room_is_its_whole_view(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        key = await w.declare("standup")
        out = io.StringIO()
        assert await status_command(w.reconciler, key, False, out) == 0
        view = json.loads(out.getvalue())
        assert view["key"] == key and view["generation"] == 1
        assert [c["type"] for c in view["conditions"]] == ["Recording", "Progressing", "Degraded"]


async def test_status_pages_rooms_and_says_where_the_next_page_starts(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        keys = [await w.declare(name) for name in ("a", "b", "c", "d", "e")]
        await w.store.append(NewEvent(
            source="api", dedup_key="delete-c", type="room.deleted", room=keys[2],
            payload={}, occurred_at=w.now(),
        ))
        out = io.StringIO()
        assert await status_command(w.reconciler, None, True, out, limit=2) == 0
        first = [json.loads(line)["key"] for line in out.getvalue().splitlines()]
        assert first == keys[:2]
        out = io.StringIO()
        assert await status_command(w.reconciler, None, True, out, limit=2, cursor=keys[1]) == 0
        second = [json.loads(line)["key"] for line in out.getvalue().splitlines()]
        assert second == [keys[3], keys[4]], "the deleted room is not a row of a page"
        out = io.StringIO()
        assert await status_command(w.reconciler, None, False, out, limit=2) == 0
        assert f"(more rooms: recctl status --cursor {keys[1]}; or --all)" in out.getvalue()
        out = io.StringIO()
        assert await status_command(w.reconciler, None, False, out, limit=4) == 0
        assert "more rooms" not in out.getvalue(), "four rooms fill the page: no next page"
        out = io.StringIO()
        assert await status_command(w.reconciler, None, True, out, limit=None) == 0
        assert len(out.getvalue().splitlines()) == 4
