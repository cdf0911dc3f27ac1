"""Schemas the deployment files are validated against, from registry packages (nothing vendored).

The Compose specification's JSON schema (Apache-2.0, github.com/compose-spec/compose-spec,
``schema/compose-spec.json``) is shipped inside the ``docker-compose`` 1.29.2 wheel on PyPI as
``compose/config/compose_spec.json``. That package cannot be installed beside our pins (it wants
PyYAML < 6), so its wheel is downloaded once with pip, without dependencies, into the venv, and
the schema read from it. The Kubernetes schemas come with ``kubernetes-validate``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

COMPOSE_WHEEL = "docker-compose==1.29.2"
COMPOSE_SCHEMA_MEMBER = "compose/config/compose_spec.json"
CACHE = Path(sys.prefix) / "share" / "recording-reconciler-schemas"


def compose_schema() -> dict[str, Any]:
    """The Compose specification's schema; fails saying how to get it when pip cannot."""
    wheels = sorted(CACHE.glob("docker_compose-1.29.2-*.whl"))
    if not wheels:
        CACHE.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--disable-pip-version-check",
                "--dest",
                str(CACHE),
                COMPOSE_WHEEL,
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        wheels = sorted(CACHE.glob("docker_compose-1.29.2-*.whl"))
        if not wheels:
            raise RuntimeError(
                f"the Compose schema comes in the {COMPOSE_WHEEL} wheel from PyPI, which pip "
                f"could not download ({done.stderr.strip()[-500:]}); run "
                f"`{sys.executable} -m pip download --no-deps -d {CACHE} {COMPOSE_WHEEL}`"
            )
    with zipfile.ZipFile(wheels[-1]) as wheel:
        schema: dict[str, Any] = json.loads(wheel.read(COMPOSE_SCHEMA_MEMBER))
    return schema
