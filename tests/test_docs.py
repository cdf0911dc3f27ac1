"""The documentation cannot rot: its shell examples run as written, its links resolve, every
setting is documented, and nothing points outside the repository.

Shell blocks are fenced ```sh (or bash, shell, console). Every one runs, unless the line just
before its fence is ``<!-- not run: REASON -->`` with a reason. The blocks of one file run in
order in one ``sh -e``, in a scratch directory beside a link to this clone's ``.venv`` (and the
files ``make`` needs), so that what one block exports the next one sees, as in the reader's
shell. The ports the examples use (8000, 8081, 8082, 9000) are replaced by free ones: the only
change made to what is written; a port left fixed fails the test.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from service.config import Settings
from tests.procs import ROOT, clean_env, free_port

SHELL_INFO = {"sh", "bash", "shell", "console"}
NOT_RUN = re.compile(r"<!--\s*not run:\s*(.*?)\s*-->")
EXAMPLE_PORTS = re.compile(r"\b(8000|8081|8082|9000)\b")
DOCUMENTS = sorted(
    [ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), *(ROOT / "service").rglob("README.md")]
    + [p for p in (ROOT / "CONTRIBUTING.md", ROOT / "CHANGELOG.md") if p.exists()]
)
BLOCK_TIMEOUT_S = 300


def fenced_blocks(text: str) -> list[tuple[str, str, str | None]]:
    """``(info, body, not_run_reason)`` of every fenced block, in order."""
    found = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        fence = re.match(r"^(```+)\s*([\w-]*)", lines[i])
        if not fence:
            i += 1
            continue
        before = lines[i - 1] if i else ""
        marker = NOT_RUN.search(before)
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith(fence.group(1)))
        body = "\n".join(lines[i + 1 : end])
        found.append((fence.group(2), body, marker.group(1) if marker else None))
        i = end + 1
    return found


def runnable(path: Path) -> list[str]:
    """The shell blocks of ``path`` that run; a not-run marker without a reason fails."""
    bodies = []
    for info, body, reason in fenced_blocks(path.read_text()):
        if info not in SHELL_INFO:
            continue
        if reason is None:
            bodies.append(body)
        else:
            assert reason, f"{path}: a not-run marker needs a reason"
    return bodies


def test_the_readme_has_runnable_examples() -> None:
    assert len(runnable(ROOT / "README.md")) >= 3


@pytest.mark.parametrize(
    "path", [p for p in DOCUMENTS if runnable(p)], ids=lambda p: str(p.relative_to(ROOT))
)
def test_shell_examples_run_as_written(path: Path, tmp_path: Path) -> None:
    ports: dict[str, str] = {}
    script = "\n".join(runnable(path))
    script = EXAMPLE_PORTS.sub(lambda m: ports.setdefault(m.group(1), str(free_port())), script)
    fixed = re.findall(r"--[\w-]*port[ =](\d+)|localhost:(\d+)|127\.0\.0\.1:(\d+)", script)
    left = {p for groups in fixed for p in groups if p and p not in ports.values()}
    assert not left, f"{path.name}: fixed ports {left}: add them to EXAMPLE_PORTS"
    for name in (".venv", "Makefile", "pyproject.toml", "constraints.txt"):
        (tmp_path / name).symlink_to(ROOT / name)
    env = clean_env(HOME=str(tmp_path))
    env = {k: v for k, v in env.items() if not k.startswith(("CLOUDFLARE_", "STORAGE_"))}
    process = subprocess.Popen(
        ["sh", "-e", "-c", script],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=BLOCK_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"{path.name}: examples still running after {BLOCK_TIMEOUT_S}s:\n{output}")
    finally:
        # Whatever the examples left running in the background (a failed block skips their kill).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    logs = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in tmp_path.glob("*.log"))
    assert process.returncode == 0, f"{path.name} examples failed:\n{output}\n{logs}"


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors of a markdown file."""
    found = set()
    for heading in re.findall(r"^#+ (.*)$", path.read_text(), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug)
    return found


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_resolve(path: Path) -> None:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue  # a URL
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        assert linked.exists(), f"{path.relative_to(ROOT)}: broken link {target}"
        if anchor and linked.is_file():
            assert anchor in _anchors(linked), f"{path.relative_to(ROOT)}: no anchor {target}"


def test_code_cites_sections_that_exist() -> None:
    """Every ``#anchor`` of a page under docs/ that code or tests cite names a real heading."""
    globs = ("service/**/*.py", "reconcilers/**/*.py", "tests/**/*.py", "tests/**/*.json")
    for source in [p for g in globs for p in ROOT.glob(g)]:
        for doc, anchor in re.findall(r"(docs/[\w/.-]+\.md)#([\w-]+)", source.read_text()):
            assert anchor in _anchors(ROOT / doc), f"{source.relative_to(ROOT)}: {doc}#{anchor}"


def test_every_setting_is_documented() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text()
    missing = [n.upper() for n in Settings.model_fields if f"`{n.upper()}`" not in text]
    assert not missing, f"settings missing from docs/configuration.md: {missing}"


def test_nothing_points_outside_the_repository() -> None:
    # Spelled in pieces, so that this file does not find itself.
    words = ("../" + "shared", "/work" + "/", "shared/" + "providers", "DESIGN" + ".md")
    outside = re.compile("|".join(re.escape(w) for w in words))
    sources = [
        p
        for p in ROOT.rglob("*")
        if (p.suffix in {".py", ".md", ".toml", ".json", ".txt"} or p.name == "Makefile")
        and not any(
            part.startswith(".") or part == "bench-results" for part in p.relative_to(ROOT).parts
        )
    ]
    found = [
        f"{p.relative_to(ROOT)}: {m.group(0)}"
        for p in sources
        for m in outside.finditer(p.read_text(errors="replace"))
    ]
    assert not found, found
