"""The container image, checked without a container daemon (none runs on this machine or CI).

The Dockerfile is parsed (``dockerfile-parse``) and its promises checked: a pinned slim Python
base, an unprivileged user, a health check on ``/healthz``, ``recctl serve`` as what runs. Then
its recipe is proved by replaying the build stage's own ``COPY`` and ``RUN`` lines in a fresh
virtual environment (the same pip command, the same constraints) and running the runtime stage's
command and health check from it against a live server.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import re
import shlex
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

from tests.procs import ROOT, Server, clean_env, free_port

DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def values(self, instruction: str) -> list[str]:
        return [value for name, value in self.instructions if name == instruction]

    def last(self, instruction: str) -> str:
        found = self.values(instruction)
        assert found, f"stage {self.name!r} has no {instruction}"
        return found[-1]

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for value in self.values("ENV"):
            for item in shlex.split(value):
                key, _, val = item.partition("=")
                values[key] = val
        return values


def stages() -> list[Stage]:
    parser = DockerfileParser(path=str(DOCKERFILE))
    args = {}
    found: list[Stage] = []
    for item in parser.structure:
        name, value = item["instruction"], item["value"]
        if name == "ARG" and not found:
            key, _, default = value.partition("=")
            args[key] = default
        elif name == "FROM":
            base, _, alias = value.partition(" AS ")
            for key, default in args.items():
                base = base.replace("${" + key + "}", default)
            found.append(Stage(alias.strip() or str(len(found)), base.strip()))
        elif name != "COMMENT":
            found[-1].instructions.append((name, value))
    return found


def exec_form(value: str) -> list[str]:
    parsed = json.loads(value)
    assert isinstance(parsed, list), f"not the exec form (a JSON list): {value}"
    return [str(v) for v in parsed]


def test_base_image_is_a_pinned_slim_python() -> None:
    build, runtime = stages()[0], stages()[-1]
    assert len(stages()) >= 2, "multi-stage: a build stage and a runtime stage"
    for stage in (build, runtime):
        assert re.fullmatch(
            r"python:\d+\.\d+\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?", stage.base
        ), f"stage {stage.name}: base {stage.base!r} is not an exact slim Python release"
    assert build.base == runtime.base, "one Python for building and running"


def test_the_runtime_stage_runs_as_an_unprivileged_user() -> None:
    user = stages()[-1].last("USER")
    name = user.split(":")[0]
    assert name not in ("root", "0"), user
    assert name.isdigit(), "a numeric uid, so that Kubernetes' runAsNonRoot can check it"


def test_the_health_check_asks_healthz() -> None:
    check = stages()[-1].last("HEALTHCHECK")
    assert "CMD" in check and "/healthz" in check, check
    assert re.search(r"--timeout=\d+s", check) and re.search(r"--interval=\d+s", check)


def test_what_runs_is_recctl_serve_on_all_interfaces() -> None:
    runtime = stages()[-1]
    command = exec_form(runtime.last("ENTRYPOINT")) + exec_form(runtime.last("CMD"))
    assert command[:2] == ["recctl", "serve"], command
    assert command[command.index("--host") + 1] == "0.0.0.0"
    port = command[command.index("--port") + 1]
    assert port in runtime.last("EXPOSE").split(), "the port served is the port exposed"
    assert f"127.0.0.1:{port}/healthz" in runtime.last("HEALTHCHECK")
    from service.cli import COMMANDS
    from service.commands.serve import serve

    assert COMMANDS["serve"] == "service.commands.serve:serve"
    params = serve.make_context("serve", command[2:]).params  # accepted exactly as written
    assert (params["host"], params["port"]) == ("0.0.0.0", int(port))


def test_the_image_installs_with_the_pinned_constraints() -> None:
    run = " ".join(stages()[0].values("RUN"))
    assert re.search(r"pip\" install (.* )?-c constraints\.txt \.", run), run
    assert any("constraints.txt" in v for v in stages()[0].values("COPY"))


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    verdict = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        glob = pattern.lstrip("!").rstrip("/")
        if any(fnmatch.fnmatchcase(c, glob) for c in candidates):
            verdict = not negated
    return verdict


def dockerignore() -> list[str]:
    lines = DOCKERIGNORE.read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def copy_sources(stage: Stage) -> list[str]:
    sources: list[str] = []
    for value in stage.values("COPY"):
        words = [w for w in value.split() if not w.startswith("--")]
        sources += [w.rstrip("/") for w in words[:-1]]
    return sources


def test_the_build_context_holds_what_is_copied_and_nothing_private() -> None:
    patterns = dockerignore()
    for source in copy_sources(stages()[0]):
        assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
        assert not ignored(source, patterns), f"COPY {source} is excluded by .dockerignore"
    for private in (
        ".venv/bin/python",
        ".git/config",
        "recorder.db",
        "tests/conftest.py",
        "service/__pycache__/cli.cpython-311.pyc",
        ".env",
    ):
        assert ignored(private, patterns), f"{private} would be sent to the build context"


@pytest.mark.slow
def test_the_build_recipe_installs_and_serves(tmp_path: Path) -> None:
    """Replay the build stage in a fresh venv, then run the runtime stage's command from it."""
    build, runtime = stages()[0], stages()[-1]
    patterns = dockerignore()
    src = tmp_path / "src"
    src.mkdir()
    for source in copy_sources(build):
        origin = ROOT / source
        if origin.is_dir():
            shutil.copytree(
                origin,
                src / source,
                ignore=lambda d, names: [
                    n for n in names if ignored(str((Path(d) / n).relative_to(ROOT)), patterns)
                ],
            )
        else:
            shutil.copy2(origin, src / source)
    venv = tmp_path / "venv"
    tools = tmp_path / "bin"  # `python` as the image has it: this machine's interpreter
    tools.mkdir()
    (tools / "python").symlink_to(getattr(sys, "_base_executable", sys.executable))
    env = {**clean_env(), **build.env(), "VIRTUAL_ENV": str(venv)}
    env["PATH"] = f"{tools}:{env['PATH']}"
    for command in build.values("RUN"):
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", command],
            cwd=src,
            env=env,
            capture_output=True,
            text=True,
            timeout=540,
            check=False,
        )
        assert done.returncode == 0, f"RUN {command}\n{done.stdout[-3000:]}{done.stderr[-3000:]}"

    port = free_port()
    command = exec_form(runtime.last("ENTRYPOINT")) + exec_form(runtime.last("CMD"))
    command[0] = str(venv / "bin" / command[0])
    command[command.index("--host") + 1] = "127.0.0.1"  # loopback only, in a test
    command[command.index("--port") + 1] = str(port)
    image_env = {k: v for k, v in runtime.env().items() if k != "PATH"}
    assert image_env["DATABASE_URL"].startswith("sqlite:////var/lib/"), "on the volume"
    image_env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'recorder.db'}"  # the volume, here
    run_env = clean_env(**image_env)
    server = Server.start(command, port, run_env, tmp_path / "server.log")
    try:
        asyncio.run(server.wait_healthy())
        check = exec_form(runtime.last("HEALTHCHECK").split("CMD", 1)[1].strip())
        check = [part.replace(f":{runtime.last('EXPOSE')}/", f":{port}/") for part in check]
        check[0] = str(venv / "bin" / check[0])
        probe = subprocess.run(check, env=run_env, capture_output=True, timeout=30, check=False)
        assert probe.returncode == 0, probe.stderr
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=60) == 0, server.log()
    finally:
        server.kill9()
    assert (tmp_path / "recorder.db").exists(), "the image's DATABASE_URL was not used"
