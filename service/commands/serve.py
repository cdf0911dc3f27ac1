"""``recctl serve``: the service (HTTP API, webhooks, metrics) on uvicorn."""

from __future__ import annotations

import click

from service.commands.common import load_settings


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="interface to bind")
@click.option("--port", type=int, default=8000, show_default=True, help="port to listen on")
def serve(host: str, port: int) -> int:
    """Run the service (HTTP API, webhooks, metrics). Configured by the environment."""
    import uvicorn

    from service.runtime import build_app, tune_gc

    settings = load_settings()
    app = build_app(settings)
    tune_gc()
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_config=None,  # ours, set up by load_settings: JSON, redacted
        access_log=settings.access_log,
        lifespan="on",  # a store that cannot open stops the start-up
        server_header=False,
        timeout_keep_alive=15,  # Agora advises keep-alive of 10 s or more for NCS callers
    )
    return 0
