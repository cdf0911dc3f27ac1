"""Issue 20, Low: after a disk-full spell, intake recovers once space is freed.

On a 3 MB volume, each one-event commit grew the WAL by ~16 KB, and with 1 MB freed the WAL
took all of it before a checkpoint ran: 72 more events, then none, for good. The writer now
truncates the WAL after every commit while space is short. A private tmpfs of 3 MB is mounted
in a user and mount namespace of its own (``unshare``), so no root is needed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.procs import ROOT

pytestmark = pytest.mark.slow


def test_intake_recovers_once_space_is_freed(tmp_path: Path) -> None:
    unshare = shutil.which("unshare")
    assert unshare, "needs unshare (util-linux: apt-get install util-linux) for a private tmpfs"
    volume = tmp_path / "volume"
    volume.mkdir()
    script = (
        f"mount -t tmpfs -o size=3m tmpfs {volume} && "
        f"exec {sys.executable} -m tests.disk_full_probe {volume}"
    )
    done = subprocess.run(
        [unshare, "--mount", "--map-root-user", "sh", "-c", script],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, (
        "could not mount a private tmpfs (user namespaces must be enabled: "
        f"sysctl kernel.unprivileged_userns_clone=1): {done.stderr[-2000:]}"
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["while_full"] == 0
    # 1 MB holds ~1,000 of these events once the WAL gives its space back; 72 before the fix.
    assert result["after_freeing_1mb"] >= 250, result
