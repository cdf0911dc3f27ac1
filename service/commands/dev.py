"""``recctl dev``: the playground (:mod:`service.commands.playground`) left running for you to
call with curl, until Ctrl-C or SIGTERM stops everything it started."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shlex
import signal
import sys
from pathlib import Path
from typing import TextIO

import click

from service.commands.playground import BUCKET, Playground, Ports, playground, recctl_command

TENANT = "dev"
MIN_TOKEN_LENGTH = 16
ROOM = "standup"


def hints(world: Playground, recctl: str) -> str:
    """What ``recctl dev`` prints once everything listens: where, and curl lines that work as
    printed (the token and the base URL written out in each)."""
    auth = shlex.quote(f"Authorization: Bearer {world.token}")
    json_type = shlex.quote("Content-Type: application/json")
    api = world.service_url
    users = f"{world.agora_url}/_emulator/channels/{ROOM}/users"
    room = f"{api}/v1/rooms/{ROOM}/recording"
    recording = shlex.quote(json.dumps({"state": "recording", "mode": "mix"}))
    stopped = shlex.quote(json.dumps({"state": "stopped"}))
    return "\n".join(
        [
            "recctl dev: the playground is running (Ctrl-C stops everything).",
            f"  service             {api}  (tenant {world.tenant}, storage profile default)",
            f"  Agora emulator      {world.agora_url}",
            f"  Cloudflare emulator {world.cloudflare_url}/client/v4",
            f"  S3 API (moto)       {world.s3_url}  (bucket {BUCKET})",
            f"  event log           {world.db}",
            f"  API token           {world.token}",
            "",
            "# a user joins the Agora channel (the emulator's control API)",
            f"curl -sS -X POST {users} -H {json_type} -d '{{\"uid\": 11}}'",
            "# the room should be recording",
            f"curl -sS -X PUT {room} -H {auth} -H {json_type} -d {recording}",
            "# what it wants and what it has (conditions, session, segment)",
            f"curl -sS {room} -H {auth}",
            "# the recordings catalog",
            f"curl -sS {api}/api/v1/recordings -H {auth}",
            "# stop it: its files reach the bucket and the recording becomes ready",
            f"curl -sS -X PUT {room} -H {auth} -H {json_type} -d {stopped}",
            "# the event log and the rooms, from the store",
            f"DATABASE_URL={world.database_url} {recctl} events --room {world.tenant}/{ROOM}",
            f"DATABASE_URL={world.database_url} {recctl} status",
            "",
        ]
    )


async def run_dev(db: Path, ports: Ports, token: str | None, out: TextIO) -> int:
    """Start the playground, print the hints, and wait for SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with playground(db, tenant=TENANT, token=token, ports=ports) as world:
            out.write(hints(world, recctl_command()))
            out.flush()
            await stop.wait()
            out.write("recctl dev: stopping\n")
            out.flush()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    return 0


def _token(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and len(value) < MIN_TOKEN_LENGTH:
        raise click.BadParameter(f"at least {MIN_TOKEN_LENGTH} characters, as API_TOKENS wants")
    return value


@click.command(
    epilog="The printed lines keep this form from one release to the next: only the ports "
    "(the options above) and the token (new at each start unless --token) change."
)
@click.option("--port", type=int, default=8000, show_default=True, help="the service's port")
@click.option("--agora-port", type=int, default=8081, show_default=True)
@click.option("--cloudflare-port", type=int, default=8082, show_default=True)
@click.option("--s3-port", type=int, default=9000, show_default=True, help="the S3 API's port")
@click.option(
    "--token", callback=_token, help="the API token (16 characters or more; default: a new one)"
)
@click.option(
    "--db",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("dev.db"),
    show_default=True,
    help="event log file, made afresh",
)
def dev(
    port: int, agora_port: int, cloudflare_port: int, s3_port: int, token: str | None, db: Path
) -> int:
    """A local playground: the service, both emulators and an S3 API server on loopback, with
    a generated API token (tenant `dev`) and a storage profile (`default`, a bucket on the S3
    server). It prints where each listens and curl lines that work as printed:

    \b
      # a user joins the Agora channel (the emulator's control API)
      curl -sS -X POST http://127.0.0.1:8081/_emulator/channels/standup/users \\
           -H 'Content-Type: application/json' -d '{"uid": 11}'
      # the room should be recording
      curl -sS -X PUT http://127.0.0.1:8000/v1/rooms/standup/recording \\
           -H 'Authorization: Bearer TOKEN' -H 'Content-Type: application/json' \\
           -d '{"state": "recording", "mode": "mix"}'
      # what it wants and what it has; the catalog; stop it
      curl -sS http://127.0.0.1:8000/v1/rooms/standup/recording -H 'Authorization: Bearer TOKEN'
      curl -sS http://127.0.0.1:8000/api/v1/recordings -H 'Authorization: Bearer TOKEN'
      curl -sS -X PUT ... -d '{"state": "stopped"}'
      DATABASE_URL=sqlite:///dev.db recctl events --room dev/standup

    A stopped Agora recording's files are put in the bucket as its recorder would, so the
    catalog reaches ready, with download URLs and archives. Ctrl-C or SIGTERM stops
    everything it started. Port 0 picks a free one.
    """
    from service.logging import configure_logging

    configure_logging("WARNING", fmt="console")
    ports = Ports(service=port, agora=agora_port, cloudflare=cloudflare_port, s3=s3_port)
    with contextlib.suppress(KeyboardInterrupt):  # a Ctrl-C during start-up
        return asyncio.run(run_dev(db, ports, token, sys.stdout))
    return 130
