"""``recctl serve``: the service (HTTP API, webhooks, metrics) on uvicorn."""

from __future__ import annotations

from typing import IO

import click
import structlog

from service.commands.common import UserError, load_settings


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="interface to bind")
@click.option("--port", type=int, default=8000, show_default=True, help="port to listen on")
def serve(host: str, port: int) -> int:
    """Run the service (HTTP API, webhooks, metrics). Configured by the environment."""
    from service.runtime import build_app, tune_gc
    from service.server import ClientLimits
    from service.server import serve as run_server

    settings = load_settings()
    created = _new_log(settings.database_url)
    lock = _serve_lock(settings.database_url)
    app = build_app(settings)
    tune_gc()
    if created is not None:
        structlog.get_logger("recctl").warning(f"created a new event log at {created}")
    metrics = app.state.context.metrics
    run_server(
        app,
        app.state.context.drain,
        host,
        port,
        settings.shutdown_timeout_seconds,
        settings.access_log,
        ClientLimits(
            header_timeout=settings.http_header_timeout_seconds,
            concurrency=settings.http_limit_concurrency,
            on_header_timeout=metrics.header_timeouts.inc,
            on_open=metrics.connections_open.inc,
            on_close=metrics.connections_open.dec,
        ),
        settings.server_stack,
    )
    if lock is not None:
        lock.close()  # the kernel would release it at exit anyway
    return 0


def _new_log(database_url: str) -> str | None:
    """The SQLite log this start creates, if it does not exist yet (said in the log, so that a
    mistyped ``DATABASE_URL`` is noticed); none is created in a directory that does not exist
    (exit 2). The read-only commands never create one (``require_existing_log``)."""
    from pathlib import Path

    from service.config import is_postgres
    from service.store.sqlite.schema import sqlite_path

    if is_postgres(database_url):
        return None
    path = Path(sqlite_path(database_url))
    if path.exists():
        return None
    if not path.parent.is_dir():
        raise UserError(
            f"invalid environment variable DATABASE_URL: no directory {path.parent} for a new "
            f"event log at {path}",
            exit_code=2,
        )
    return str(path)


def _serve_lock(database_url: str) -> IO[str] | None:
    """Refuse a second ``recctl serve`` on one SQLite file (exit 2, saying why); ``None`` for
    PostgreSQL, where replicas are meant to share the database."""
    from service.config import is_postgres
    from service.store.serve_lock import AlreadyServing, hold_serve_lock
    from service.store.sqlite.schema import sqlite_path

    if is_postgres(database_url):
        return None
    try:
        return hold_serve_lock(sqlite_path(database_url))
    except AlreadyServing as exc:
        raise UserError(str(exc), exit_code=2) from None
