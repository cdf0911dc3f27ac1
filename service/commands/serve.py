"""``recctl serve``: the service (HTTP API, webhooks, metrics) on uvicorn."""

from __future__ import annotations

import click

from service.commands.common import load_settings


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="interface to bind")
@click.option("--port", type=int, default=8000, show_default=True, help="port to listen on")
def serve(host: str, port: int) -> int:
    """Run the service (HTTP API, webhooks, metrics). Configured by the environment."""
    from service.runtime import build_app, tune_gc
    from service.server import serve as run_server

    settings = load_settings()
    app = build_app(settings)
    tune_gc()
    run_server(
        app,
        app.state.context.drain,
        host,
        port,
        settings.shutdown_timeout_seconds,
        settings.access_log,
    )
    return 0
